"""Header parsing throughput: smtpx's pure and compiled twins against the standard library.

Run by hand (never in tests):
``PYTHONPATH=. python bench/headers.py [--messages N] [--rounds N] [--seed N]``.
Every number comes from this one process and one generated corpus of realistic messages: 20-40
header fields each (a chain of folded Received fields, DKIM/ARC signatures, folded
Authentication-Results, RFC 2047 encoded From/To/Cc/Subject in UTF-8, ISO-8859-1 and
Windows-1252, List-* and X-* fields) and a 1 KiB multipart body, CRLF line endings.

Rows (messages/s, best of ``--rounds``):

* ``stdlib BytesHeaderParser``: ``email.parser.BytesHeaderParser(policy=compat32)``, raw values.
* ``stdlib BytesParser(default)``: ``BytesParser(policy=default).parsebytes(m, headersonly=True)``
  and every field read as decoded ``str`` (what ``Mail.headers()`` gives).
* ``parse_header_block``: the twin alone (fields as raw bytes, body offset).
* ``Mail.headers_literal()``: ``Mail(m).headers_literal()`` (str values, no decoding).
* ``Mail.headers()``: ``Mail(m).headers()`` with RFC 2047 decoding and address quote-escape.

The targets (issue 4): compiled ``parse_header_block`` >= 10x ``BytesHeaderParser``, pure >= 2x;
compiled ``Mail.headers()`` >= 10x ``BytesParser(default)``.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import random
import time
from collections.abc import Callable

import smtpx.mail
from smtpx._headers_py import parse_header_block as pure_parse
from smtpx.mail import Mail

Parser = Callable[[bytes], tuple[list[tuple[bytes, bytes]], int]]
compiled_parse: Parser | None
try:
    from smtpx._speedups._headers import parse_header_block as compiled_parse
except ImportError:  # a pure build: the compiled rows are left out
    compiled_parse = None

_NAMES = ["Anna Öberg", "Jörg Müller", "张三", "José García", "Zoë Brontë", "Bob Smith", "Łukasz"]
_WORDS = [
    "quarterly",
    "report",
    "meeting",
    "invoice",
    "update",
    "release",
    "notes",
    "café",
    "résumé",
    "naïve",
]


def _encode(text: str, rng: random.Random) -> str:
    """``text`` as one or two RFC 2047 words, or plain when it is ASCII."""
    if text.isascii() and rng.random() < 0.5:
        return text
    kind = rng.choice(["b-utf8", "q-utf8", "q-latin1", "split"])
    if kind == "q-latin1" and all(ord(c) < 256 for c in text):
        raw = text.encode("latin-1")
        q = "".join(chr(b) if 48 <= b < 123 and chr(b).isalnum() else f"={b:02X}" for b in raw)
        return f"=?ISO-8859-1?Q?{q}?="
    if kind == "split" and len(text) > 4:
        half = len(text) // 2
        a = base64.b64encode(text[:half].encode()).decode()
        b = base64.b64encode(text[half:].encode()).decode()
        return f"=?UTF-8?B?{a}?=\r\n =?UTF-8?B?{b}?="
    if kind == "q-utf8":
        q = "".join(
            c
            if c.isascii() and c.isalnum()
            else "_"
            if c == " "
            else "".join(f"={b:02X}" for b in c.encode())
            for c in text
        )
        return f"=?utf-8?q?{q}?="
    return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="


def _message(rng: random.Random) -> bytes:
    def mbox() -> str:
        name = rng.choice(_NAMES)
        user = f"user{rng.randrange(1000)}@example{rng.randrange(50)}.com"
        return f"{_encode(name, rng)} <{user}>"

    hosts = [f"mx{i}.relay{rng.randrange(99)}.example.net" for i in range(rng.randint(3, 8))]
    lines = [f"Return-Path: <bounce-{rng.randrange(10**6)}@lists.example.org>"]
    for i, host in enumerate(hosts):
        lines.append(
            f"Received: from {host} ({host} [192.0.2.{i + 1}])\r\n"
            f"\tby mx.example.com (Postfix) with ESMTPS id {rng.randrange(16**10):010X}\r\n"
            f"\tfor <rcpt@example.com>; Tue, 3 Mar 2026 10:{i:02d}:00 +0000 (UTC)"
        )
    sig = base64.b64encode(rng.randbytes(180)).decode()
    lines += [
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel1;\r\n"
        "\th=from:to:subject:date:message-id:mime-version:content-type;\r\n"
        f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};\r\n"
        f"\tb={sig[:76]}\r\n\t {sig[76:]}",
        "ARC-Seal: i=1; a=rsa-sha256; t=1700000000; cv=none; d=example.org; s=arc;\r\n"
        f"\tb={sig[:70]}",
        "Authentication-Results: mx.example.com;\r\n"
        "\tdkim=pass header.d=example.org header.s=sel1;\r\n"
        "\tspf=pass smtp.mailfrom=lists.example.org;\r\n"
        "\tdmarc=pass (p=none dis=none) header.from=example.org",
        f"From: {mbox()}",
        "To: " + ",\r\n ".join(mbox() for _ in range(rng.randint(1, 4))),
        "Cc: " + ", ".join(mbox() for _ in range(rng.randint(0, 3))),
        "Subject: " + _encode(" ".join(rng.choices(_WORDS, k=rng.randint(3, 9))), rng),
        "Date: Tue, 3 Mar 2026 10:00:00 +0000",
        f"Message-ID: <{rng.randrange(16**16):016x}@mail.example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="=_b0undary"',
        "X-Mailer: BenchMailer 4.2",
        "List-Id: Example list <list.example.org>",
        "List-Unsubscribe: <mailto:unsub@example.org>, <https://example.org/u/123>",
        "Precedence: bulk",
        "X-Spam-Status: No, score=-0.1 required=5.0 tests=DKIM_SIGNED,DKIM_VALID\r\n"
        "\tautolearn=ham version=3.4.6",
    ]
    extra = rng.randint(20, 40) - len(lines)
    lines += [f"X-Custom-{k}: value {rng.randrange(10**6)}" for k in range(max(0, extra))]
    lines = lines[:40]
    body = (
        "--=_b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + ("Hello world, this is the body. " * 30)
        + "\r\n--=_b0undary--\r\n"
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


def _rate(fn: Callable[[bytes], object], corpus: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for msg in corpus:
            fn(msg)
        best = min(best, time.perf_counter() - start)
    return len(corpus) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    corpus = [_message(rng) for _ in range(args.messages)]
    counts = [len(pure_parse(m)[0]) for m in corpus]
    print(
        f"corpus: {len(corpus)} messages, {min(counts)}-{max(counts)} fields "
        f"(mean {sum(counts) / len(counts):.1f}), {sum(map(len, corpus)) // len(corpus)} B each"
    )

    compat = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    modern = email.parser.BytesParser(policy=email.policy.default)

    def stdlib_decoded(m: bytes) -> object:
        msg = modern.parsebytes(m, headersonly=True)
        return [(k, str(v)) for k, v in msg.items()]

    # Sanity: both twins and the stdlib see the same fields.
    if compiled_parse is not None:
        assert all(pure_parse(m) == compiled_parse(m) for m in corpus)
    rows: list[tuple[str, float]] = []
    rows.append(
        ("stdlib BytesHeaderParser (compat32)", _rate(compat.parsebytes, corpus, args.rounds))
    )
    rows.append(("stdlib BytesParser(default) + items", _rate(stdlib_decoded, corpus, args.rounds)))
    twins: list[tuple[str, Parser]] = [("pure", pure_parse)]
    if compiled_parse is not None:
        twins.append(("cython", compiled_parse))
    for label, parse in twins:
        rows.append((f"{label}: parse_header_block", _rate(parse, corpus, args.rounds)))
        # Mail parses through this twin from now on (as the tests' make_mail fixture does).
        vars(smtpx.mail)["parse_header_block"] = parse
        rows.append(
            (
                f"{label}: Mail.headers_literal()",
                _rate(lambda m: Mail(m).headers_literal(), corpus, args.rounds),
            )
        )
        rows.append(
            (f"{label}: Mail.headers()", _rate(lambda m: Mail(m).headers(), corpus, args.rounds))
        )

    base_compat = rows[0][1]
    base_default = rows[1][1]
    print(f"{'':40} {'msgs/s':>10} {'x compat32':>11} {'x default':>10}")
    for label, rate in rows:
        print(f"{label:40} {rate:10,.0f} {rate / base_compat:11.2f} {rate / base_default:10.2f}")
    table = dict(rows)
    print("\ntargets (issue 4):")
    checks = [("pure: parse_header_block", base_compat, 2.0, "compat32")]
    if compiled_parse is not None:
        checks += [
            ("cython: parse_header_block", base_compat, 10.0, "compat32"),
            ("cython: Mail.headers()", base_default, 10.0, "default"),
        ]
    for label, base, want, vs in checks:
        got = table[label] / base
        verdict = "ok" if got >= want else "MISSED"
        print(f"  {label:30} {got:6.1f}x {vs} (want >= {want:.0f}x)  {verdict}")


if __name__ == "__main__":
    main()
