"""Soak: hundreds of clients against ``smtpx serve --authres`` for minutes (issue 10, item 2).

Run by hand from the repository root (loopback only; bounded in time and in count)::

    nice -n 10 python bench/soak.py                      # 10 minutes, 300 clients, 2 processes
    python bench/soak.py --seconds 20 --clients 20 --procs 1 --json /tmp/soak.json

What runs, each in its own process:

* the server under test: the real CLI, ``python -m smtpx serve --authres --dns-server
  127.0.0.1:PORT --maildir TMP --tls-cert ... --tls-key ... --auth-file ...`` (STARTTLS with
  trustme certificates, AUTH with one scrypt user);
* a loopback DNS server (``tests/authres/dnsserver.py``) in this process, serving honest records
  to most sender domains and hostile ones to the rest: a 16384-bit DKIM key, SPF records built
  to make a backtracking regex blow up, an SPF record over the length cap, DMARC records with
  bad tags, names that never answer (timeouts) and names that answer SERVFAIL;
* ``--procs`` client processes with ``--clients`` asyncio clients in all, each running one
  scenario after another (``SCENARIOS``): good mail, pipelined transactions, STARTTLS (and
  plaintext injected after it), AUTH PLAIN after STARTTLS, BDAT chunks (one by one or
  pipelined), oversize messages, smuggling
  attempts, garbage commands,
  slowloris, abrupt disconnects and TLS handshakes cut half-way;
* a probe process that sends NOOP every 0.2 s on a connection of its own and times the reply,
  and (unless ``--no-control``) an idle smtpx with a probe of its own at the same priority: the
  control tells the machine's share of the latency (scheduling) from the load's.

Every message carries a unique token in its Message-ID. The checker then reads the Maildir
and verifies that every message answered 250 was stored exactly once, byte-identical after
the trace fields smtpx prepends (Return-Path, Received, Authentication-Results), and that
nothing else was stored (a refused, aborted or smuggled token must not appear; a message
whose reply never came is "in doubt" and may be stored at most once). Meanwhile this process
samples the server's RSS, open descriptors (``/proc/PID/fd``) and threads (``/proc/PID/task``)
every ``--sample`` seconds.

The summary gives: sent, acknowledged, stored, lost, duplicated, unexpected, mismatched; RSS
at minute 2 (``--rss-mark``) and at the end of the load; descriptors and threads at the
baseline (after a warm-up that fills the thread pools) and at the end; the probe's worst and
99th-percentile NOOP latency. Exit status 1 when anything was lost, duplicated, mismatched or
unexpectedly stored, or when the server did not stop cleanly.

Adding a scenario: write an ``async def
scenario_x(client: ClientCtx) -> None`` that records each message it sends with
``client.record(token, kind, data)``, and add it to ``SCENARIOS`` with a weight. The checker
needs nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the DNS server and the hostile generators live in tests/
    sys.path.insert(0, str(ROOT))

HOSTNAME = "mx.soak.test"
MAX_SIZE = 1024 * 1024
# Outcome kinds a client records for each token.
ACKED, REFUSED, ABORTED, DOUBT, SMUGGLED = "acked", "refused", "aborted", "doubt", "smuggled"

# --------------------------------------------------------------------------- DNS zone

# Sender domains and their weights: most are honest, the rest get hostile DNS.
DOMAINS: dict[str, float] = {
    "good.test": 55,  # SPF pass, DKIM (when signed) pass, DMARC p=none
    "redos.test": 8,  # SPF include with a long top label ending in "!": backtracking bait
    "longspf.test": 5,  # SPF record over the 4096-octet cap
    "bigkey.test": 8,  # DKIM key record with a 16384-bit modulus and exponent (over TCP)
    "slow.test": 4,  # never answered: the resolver times out
    "servfail.test": 6,  # SERVFAIL for everything
    "dmarcbad.test": 7,  # DMARC record with bad tags (each discarded, RFC 7489 6.3)
    "nxdomain.test": 7,  # nothing at all
}


def _txt(value: str) -> str:
    """A TXT rdata in presentation format, cut into 255-octet strings (RFC 1035 3.3.14)."""
    return " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))


def build_zone(dkim_public: str) -> tuple[dict[str, list[tuple[str, str]]], list[str], list[str]]:
    """The zone, the names that never answer and the names that answer SERVFAIL."""
    from tests.authres.hostile import huge_rsa_record  # noqa: PLC0415 (sys.path set above)

    redos = "v=spf1 include:x." + "a" * 3000 + "! -all"
    long_spf = "v=spf1 " + " ".join(f"ip4:10.{i // 256}.{i % 256}.1" for i in range(400)) + " -all"
    zone: dict[str, list[tuple[str, str]]] = {
        "good.test": [("TXT", _txt("v=spf1 ip4:127.0.0.0/8 -all"))],
        "_dmarc.good.test": [("TXT", _txt("v=DMARC1; p=none"))],
        "sel._domainkey.good.test": [("TXT", _txt(f"v=DKIM1; k=rsa; p={dkim_public}"))],
        "redos.test": [("TXT", _txt(redos))],
        "_dmarc.redos.test": [("TXT", _txt("v=DMARC1; p=quarantine"))],
        "longspf.test": [("TXT", _txt(long_spf))],
        "bigkey.test": [("TXT", _txt("v=spf1 ip4:127.0.0.1 -all"))],
        "big._domainkey.bigkey.test": [("TXT", _txt(huge_rsa_record(16384)))],
        "_dmarc.bigkey.test": [("TXT", _txt("v=DMARC1; p=reject; adkim=s"))],
        "dmarcbad.test": [("TXT", _txt("v=spf1 +all"))],
        "_dmarc.dmarcbad.test": [
            ("TXT", _txt("v=DMARC1; p=reject; pct=150; adkim=x; ri=abc; rf=zz; fo=9; rua=nope"))
        ],
    }
    slow = ["slow.test", "_dmarc.slow.test", "sel._domainkey.slow.test"]
    servfail = ["servfail.test", "_dmarc.servfail.test", "sel._domainkey.servfail.test"]
    return zone, slow, servfail


# --------------------------------------------------------------------------- messages

_LINE_CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:-_=+!?"


def make_message(rng: random.Random, token: str, domain: str, size: int) -> bytes:
    """A message of about ``size`` bytes whose Message-ID holds ``token``; CRLF lines only."""
    head = (
        f"From: Soak <sender@{domain}>\r\n"
        f"To: <rcpt@{HOSTNAME}>\r\n"
        f"Subject: soak {token}\r\n"
        f"Message-ID: <{token}@soak.test>\r\n"
        "Date: Sat, 28 Nov 2026 22:00:00 +0000\r\n"
        "\r\n"
    ).encode()
    lines: list[str] = []
    total = len(head)
    while total < size:
        kind = rng.random()
        if kind < 0.05:
            line = "." + "".join(rng.choices(_LINE_CHARS, k=rng.randint(0, 40)))  # needs stuffing
        elif kind < 0.08:
            line = ""
        else:
            line = "".join(rng.choices(_LINE_CHARS, k=rng.randint(1, 120)))
        lines.append(line)
        total += len(line) + 2
    return head + "".join(line + "\r\n" for line in lines).encode()


def stuff_lines(data: bytes) -> bytes:
    """Dot-stuff (RFC 5321 4.5.2): a dot that starts a CRLF-delimited line is doubled.

    Only CRLF starts a line here: a bare LF or CR followed by a dot is left alone, as a
    smuggling attempt needs it.
    """
    return re.sub(rb"(\A|\r\n)\.", rb"\1..", data)


def stuff(data: bytes) -> bytes:
    """Dot-stuff and terminate: what goes on the wire after DATA."""
    return stuff_lines(data) + b".\r\n"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the client side


class Reply(Exception):
    """An unexpected reply (the scenario gives up on this session)."""


@dataclass
class ClientCtx:
    """One asyncio client: its randomness, its outcome log and the server's address."""

    port: int
    rng: random.Random
    name: str
    tls: ssl.SSLContext
    dkim_key: bytes
    outcomes: dict[str, list[Any]]
    stats: Counter[str]
    seq: int = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    timeout: float = 90.0

    def token(self) -> str:
        self.seq += 1
        return f"{self.name}-{self.seq}"

    def record(self, token: str, kind: str, data: bytes) -> None:
        self.outcomes[token] = [kind, digest(data), len(data)]
        self.stats[f"msg_{kind}"] += 1

    async def connect(self) -> int:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20), self.timeout
        )
        return (await self.reply())[0]

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), self.timeout)

    async def reply(self) -> tuple[int, bytes]:
        assert self.reader is not None
        lines: list[bytes] = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not line:
                raise EOFError("connection closed")
            if not line.endswith(b"\r\n") or not line[:3].isdigit():
                self.stats["malformed_reply"] += 1  # must stay 0
                raise Reply(f"malformed reply line {line[:80]!r}")
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"".join(lines)

    async def cmd(self, line: bytes, expect: int | None = None) -> int:
        await self.send(line + b"\r\n")
        code, text = await self.reply()
        if expect is not None and code != expect:
            raise Reply(f"{line[:40]!r} -> {text[:80]!r}")
        return code

    async def ehlo(self) -> None:
        await self.cmd(b"EHLO " + self.name.encode() + b".client.test", 250)

    def close(self, *, rst: bool = False) -> None:
        writer, self.writer, self.reader = self.writer, None, None
        if writer is None:
            return
        if rst:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    # SO_LINGER on with a zero timeout: the close sends RST, not FIN.
                    linger = struct.pack("ii", 1, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            writer.transport.abort()
        else:
            writer.close()

    def domain(self) -> str:
        return self.rng.choices(list(DOMAINS), weights=list(DOMAINS.values()))[0]

    def message(
        self, domain: str, size: int | None = None, *, sign: float = 0.3
    ) -> tuple[str, bytes]:
        token = self.token()
        if size is None:
            size = int(self.rng.choice((600, 2_000, 8_000, 30_000, 120_000)) * self.rng.random())
        data = make_message(self.rng, token, domain, max(size, 200))
        if domain in ("good.test", "bigkey.test") and self.rng.random() < sign:
            import dkim  # noqa: PLC0415 (only signing clients need it)

            selector = b"sel" if domain == "good.test" else b"big"
            headers = [b"from", b"to", b"subject", b"message-id"]
            # dkim.sign returns the DKIM-Signature field alone; it goes on top of the message.
            key = self.dkim_key
            dkim_sign = dkim.sign  # type: ignore[attr-defined]  # stubs/dkim: only what smtpx calls
            data = dkim_sign(data, selector, domain.encode(), key, include_headers=headers) + data
        return token, data

    async def transaction(
        self, domain: str | None = None, *, rcpts: int = 1, sign: float = 0.3
    ) -> None:
        """MAIL, RCPT, DATA and one message, each reply awaited; records the outcome."""
        domain = domain or self.domain()
        await self.cmd(f"MAIL FROM:<sender@{domain}>".encode(), 250)
        for i in range(rcpts):
            await self.cmd(f"RCPT TO:<r{i}@{HOSTNAME}>".encode(), 250)
        await self.cmd(b"DATA", 354)
        token, data = self.message(domain, sign=sign)
        await self.finish_message(token, data)

    async def finish_message(self, token: str, data: bytes, wire: bytes | None = None) -> int:
        """Send ``data`` (stuffed) and the final dot, read the reply, record the outcome."""
        try:
            await self.send(stuff(data) if wire is None else wire)
            code, _ = await self.reply()
        except (OSError, EOFError, asyncio.TimeoutError, Reply):
            self.record(token, DOUBT, data)
            raise
        self.record(token, ACKED if code == 250 else REFUSED, data)
        self.stats[f"reply_{code}"] += 1
        return code

    async def quit(self) -> None:
        with contextlib.suppress(OSError, EOFError, asyncio.TimeoutError, Reply):
            await self.cmd(b"QUIT")
        self.close()


async def scenario_good(c: ClientCtx) -> None:
    await c.connect()
    await c.ehlo()
    for _ in range(c.rng.randint(1, 3)):
        await c.transaction(rcpts=c.rng.choice((1, 1, 1, 2)))
    await c.quit()


async def scenario_pipelined(c: ClientCtx) -> None:
    """RFC 2920: MAIL, RCPT and DATA in one write; the next group right after the dot."""
    await c.connect()
    await c.ehlo()  # EHLO ends a group: wait for its reply (forbid_unauth_pipelining)
    count = c.rng.randint(2, 5)

    def group() -> tuple[str, bytes]:
        domain = c.domain()
        rcpt = f"RCPT TO:<p@{HOSTNAME}>\r\n".encode()
        return domain, f"MAIL FROM:<sender@{domain}>\r\n".encode() + rcpt + b"DATA\r\n"

    domain, cmds = group()
    await c.send(cmds)
    for i in range(count):
        codes = [(await c.reply())[0] for _ in range(3)]
        if codes != [250, 250, 354]:
            raise Reply(f"pipelined group answered {codes}")
        token, data = c.message(domain)
        last = i == count - 1
        if not last:
            domain, cmds = group()
        await c.finish_message(token, data, stuff(data) + (b"QUIT\r\n" if last else cmds))
    with contextlib.suppress(OSError, EOFError, asyncio.TimeoutError, Reply):
        await c.reply()  # 221
    c.close()


async def start_tls(writer: asyncio.StreamWriter, context: ssl.SSLContext) -> None:
    """Upgrade a client stream to TLS (``StreamWriter.start_tls`` is Python 3.11+)."""
    if sys.version_info >= (3, 11):
        await writer.start_tls(context, server_hostname=HOSTNAME)
        return
    # NOTE: Python 3.10 has loop.start_tls only; the stream's protocol keeps feeding the reader,
    # so only the writer must learn the new transport. Ref: CPython gh-79156 (added in 3.11).
    transport = writer.transport
    loop = asyncio.get_running_loop()
    tls = await loop.start_tls(
        transport, transport.get_protocol(), context, server_hostname=HOSTNAME
    )
    setattr(writer, "_transport", tls)  # noqa: B010 (private slot, 3.10 only)


async def scenario_starttls(c: ClientCtx) -> None:
    await c.connect()
    await c.ehlo()
    inject = c.rng.random() < 0.3
    if inject:
        # CVE-2011-0411: plaintext after STARTTLS must be discarded, never run after the upgrade.
        token = c.token()
        await c.send(b"STARTTLS\r\nMAIL FROM:<injected@good.test>\r\n")
        c.record(token, SMUGGLED, b"injected")  # a marker: no message, counts as sent
    else:
        await c.send(b"STARTTLS\r\n")
    code, _ = await c.reply()
    if code != 220:
        raise Reply(f"STARTTLS -> {code}")
    assert c.writer is not None
    await asyncio.wait_for(start_tls(c.writer, c.tls), c.timeout)
    await c.ehlo()
    for _ in range(c.rng.randint(1, 2)):
        await c.transaction()  # a 503 here would mean the injected MAIL ran
    await c.quit()


async def scenario_bdat(c: ClientCtx) -> None:
    """CHUNKING (RFC 3030): the message in BDAT chunks, cut anywhere (a CRLF split across
    chunks included), sent one by one or all pipelined in one write; the last is BDAT LAST.
    """
    await c.connect()
    await c.ehlo()
    domain = c.domain()
    await c.cmd(f"MAIL FROM:<chunks@{domain}>".encode(), 250)
    await c.cmd(f"RCPT TO:<bdat@{HOSTNAME}>".encode(), 250)
    token, data = c.message(domain)
    cuts = sorted(c.rng.sample(range(1, len(data)), min(len(data) - 1, c.rng.randint(0, 6))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    wires = [
        f"BDAT {len(p)}{' LAST' if i == len(pieces) - 1 else ''}\r\n".encode() + p
        for i, p in enumerate(pieces)
    ]
    try:
        if c.rng.random() < 0.5:
            await c.send(b"".join(wires))  # RFC 3030 2: BDAT may be pipelined
            codes = [(await c.reply())[0] for _ in wires]
        else:
            codes = []
            for wire in wires:
                await c.send(wire)
                codes.append((await c.reply())[0])
    except (OSError, EOFError, asyncio.TimeoutError, Reply):
        c.record(token, DOUBT, data)
        raise
    code = codes[-1]
    if any(x != 250 for x in codes[:-1]):
        raise Reply(f"BDAT chunks answered {codes}")
    c.record(token, ACKED if code == 250 else REFUSED, data)
    c.stats[f"bdat_{code}"] += 1
    await c.quit()


AUTH_USER, AUTH_PASSWORD = "soak", "soak password"


async def scenario_auth(c: ClientCtx) -> None:
    """STARTTLS, AUTH PLAIN (RFC 4954) with good credentials, then mail.

    Only good credentials: every client comes from 127.0.0.1, and the per-address failure
    limit (20 in 15 minutes) would soon refuse AUTH to all of them.
    """
    await c.connect()
    await c.ehlo()
    await c.cmd(b"STARTTLS", 220)
    assert c.writer is not None
    await asyncio.wait_for(start_tls(c.writer, c.tls), c.timeout)
    await c.ehlo()
    token = base64.b64encode(f"\0{AUTH_USER}\0{AUTH_PASSWORD}".encode())
    code = await c.cmd(b"AUTH PLAIN " + token)
    c.stats[f"auth_{code}"] += 1
    if code == 235:
        await c.transaction()
    await c.quit()  # 454 4.7.0 (the password-check pool is busy) is a temporary refusal


async def scenario_oversize(c: ClientCtx) -> None:
    await c.connect()
    await c.ehlo()
    if c.rng.random() < 0.5:
        code = await c.cmd(f"MAIL FROM:<big@good.test> SIZE={MAX_SIZE * 2}".encode())
        c.stats[f"size_declared_{code}"] += 1
    else:
        await c.cmd(b"MAIL FROM:<big@good.test>", 250)
        await c.cmd(f"RCPT TO:<big@{HOSTNAME}>".encode(), 250)
        await c.cmd(b"DATA", 354)
        token, data = c.message("good.test", size=MAX_SIZE + 100_000)
        code = await c.finish_message(token, data)
        c.stats[f"oversize_{code}"] += 1
        await c.transaction()  # the session goes on after 552
    await c.quit()


_SMUGGLE_ENDS = (b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n.\r\r\n", b"\r.\r")


async def scenario_smuggle(c: ClientCtx) -> None:
    """An end marker other than CRLF.CRLF, then a whole second transaction (SMTP smuggling)."""
    await c.connect()
    await c.ehlo()
    await c.cmd(b"MAIL FROM:<outer@good.test>", 250)
    await c.cmd(f"RCPT TO:<outer@{HOSTNAME}>".encode(), 250)
    await c.cmd(b"DATA", 354)
    outer, data = c.message("good.test", size=500)
    inner, smuggled = c.message("good.test", size=400)
    c.record(inner, SMUGGLED, smuggled)
    ending = c.rng.choice(_SMUGGLE_ENDS)
    cmds = f"MAIL FROM:<smuggler@good.test>\r\nRCPT TO:<victim@{HOSTNAME}>\r\nDATA\r\n"
    rest = cmds.encode() + smuggled
    payload = data[:-2] + ending + rest  # what a server that took all of it would store
    wire = stuff_lines(data[:-2]) + ending + stuff_lines(rest) + b".\r\n"
    code = await c.finish_message(outer, payload, wire)
    c.stats[f"smuggle_{code}"] += 1
    await c.quit()


_GARBAGE = (
    b"HELLO",
    b"MAIL FROM:<a@b.test> SIZE=\xc2\xb2",
    b"RCPT TO:<x>",
    b"\xff\xfe\xfd",
    b"DATA",
    b"AUTH PLAIN AGFhAGI=",
    b"BDAT 10 LAST",
    b"EHLO \x00nul",
    b"X" * 2000,
    b"VRFY root",
    b"MAIL FROM:<a@b.test> BODY=9BIT",
    b"NOOP",
    b"RSET",
    b"STARTTLS extra",
    b"XCLIENT ADDR=1.2.3.4",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
)


async def scenario_garbage(c: ClientCtx) -> None:
    await c.connect()
    if c.rng.random() < 0.5:
        await c.ehlo()
    flood = c.rng.random() < 0.2
    if flood:
        # A NOOP flood without reading: the junk limit and back-pressure end it.
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await c.send(b"NOOP\r\n" * 5000)
    else:
        for _ in range(c.rng.randint(1, 30)):
            line = c.rng.choice(_GARBAGE)
            if c.rng.random() < 0.3:
                line = bytes(c.rng.randrange(1, 256) for _ in range(c.rng.randint(1, 80)))
                line = line.replace(b"\r", b"").replace(b"\n", b"")
            code = await c.cmd(line)
            c.stats[f"garbage_{code}"] += 1
            if code == 421:
                break
    # Read to the end (the server closes after its limits), then leave.
    with contextlib.suppress(OSError, EOFError, asyncio.TimeoutError, Reply):
        while True:
            await c.reply()
    c.close()


async def scenario_slowloris(c: ClientCtx) -> None:
    await c.connect()
    variant = c.rng.random()
    if variant < 0.4:
        # One byte every second or so: the command-line timeout cuts it (421 4.4.2).
        for byte in b"EHLO slow.client.test\r\n":
            await c.send(bytes([byte]))
            await asyncio.sleep(c.rng.uniform(0.5, 2.0))
        c.stats["slowloris_survived"] += 1
    elif variant < 0.6:
        await asyncio.sleep(c.rng.uniform(5, 25))  # silent
        with contextlib.suppress(OSError, EOFError, asyncio.TimeoutError, Reply):
            await c.cmd(b"NOOP")
    else:
        # Slow but steady DATA: every silence is short, so it is served.
        await c.ehlo()
        await c.cmd(b"MAIL FROM:<slow@good.test>", 250)
        await c.cmd(f"RCPT TO:<slow@{HOSTNAME}>".encode(), 250)
        await c.cmd(b"DATA", 354)
        token, data = c.message("good.test", size=3000)
        body = stuff_lines(data)
        try:
            for i in range(0, len(body), 400):
                await c.send(body[i : i + 400])
                await asyncio.sleep(c.rng.uniform(0.2, 2.0))
        except (OSError, asyncio.TimeoutError):
            c.record(token, ABORTED, data)
            raise
        await c.finish_message(token, data, b".\r\n")
        await c.quit()
        return
    c.close()


async def scenario_abrupt(c: ClientCtx) -> None:
    await c.connect()
    variant = c.rng.random()
    if variant < 0.15:
        c.close(rst=True)
        return
    await c.ehlo()
    if variant < 0.3:
        await c.send(b"MAIL FROM:<rst@good.test>\r\n")
        c.close(rst=True)
        return
    if variant < 0.5:
        # A TLS handshake cut half-way: half a ClientHello, then RST or FIN.
        await c.cmd(b"STARTTLS", 220)
        hello = client_hello(c.tls)
        await c.send(hello[: c.rng.randint(1, len(hello) - 1)])
        await asyncio.sleep(c.rng.uniform(0, 0.3))
        c.close(rst=c.rng.random() < 0.5)
        return
    await c.cmd(b"MAIL FROM:<rst@good.test>", 250)
    await c.cmd(f"RCPT TO:<rst@{HOSTNAME}>".encode(), 250)
    await c.cmd(b"DATA", 354)
    token, data = c.message("good.test")
    wire = stuff(data)
    if variant < 0.85:
        # Gone in the middle of DATA: nothing may be stored.
        c.record(token, ABORTED, data)
        await c.send(wire[: c.rng.randint(0, len(wire) - 4)])
        c.close(rst=c.rng.random() < 0.5)
    else:
        # Gone right after the final dot, without reading the reply: in doubt.
        c.record(token, DOUBT, data)
        await c.send(wire)
        c.close(rst=c.rng.random() < 0.5)


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes of a real TLS ClientHello for ``ctx`` (made in memory, never sent whole)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


Scenario = Callable[[ClientCtx], Awaitable[None]]
# name -> (weight, scenario).
SCENARIOS: dict[str, tuple[float, Scenario]] = {
    "good": (40, scenario_good),
    "pipelined": (14, scenario_pipelined),
    "starttls": (10, scenario_starttls),
    "auth": (4, scenario_auth),
    "bdat": (8, scenario_bdat),
    "oversize": (2, scenario_oversize),
    "smuggle": (6, scenario_smuggle),
    "garbage": (8, scenario_garbage),
    "slowloris": (4, scenario_slowloris),
    "abrupt": (8, scenario_abrupt),
}


async def run_clients(args: argparse.Namespace) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=args.ca)
    dkim_key = Path(args.dkim_key).read_bytes()
    outcomes: dict[str, list[Any]] = {}
    stats: Counter[str] = Counter()
    deadline = time.monotonic() + args.duration
    budget = [args.max_sessions]
    names = list(SCENARIOS)
    weights = [SCENARIOS[n][0] for n in names]

    async def worker(index: int) -> None:
        rng = random.Random(f"{args.seed}-{args.proc}-{index}")
        c = ClientCtx(args.port, rng, f"p{args.proc}c{index}", tls, dkim_key, outcomes, stats)
        await asyncio.sleep(rng.uniform(0, min(5.0, args.duration / 4)))  # ramp up
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            name = rng.choices(names, weights=weights)[0]
            stats[f"session_{name}"] += 1
            try:
                await asyncio.wait_for(SCENARIOS[name][1](c), 180)
                stats["session_ok"] += 1
            except (OSError, EOFError, asyncio.TimeoutError, ssl.SSLError, Reply) as exc:
                stats[f"ended_{name}_{type(exc).__name__}"] += 1
                if isinstance(exc, Reply):  # an unexpected reply: keep what it was
                    stats[f"unexpected_reply {exc}"[:100]] += 1
            finally:
                c.close()
            await asyncio.sleep(rng.expovariate(1 / args.think) if args.think else 0)

    await asyncio.gather(*(worker(i) for i in range(args.clients)))
    return {"outcomes": outcomes, "stats": dict(stats)}


def client_main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_clients(args))
    Path(args.out).write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- the probe


def probe_main(args: argparse.Namespace) -> int:
    """NOOP every ``interval`` on one connection (a fresh one every 50, under the junk limit)."""
    deadline = time.monotonic() + args.duration
    latencies: list[float] = []
    failures: list[str] = []
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", args.port), timeout=10) as sock:
                f = sock.makefile("rb")
                f.readline()
                sock.sendall(b"EHLO probe.test\r\n")
                while (line := f.readline())[3:4] == b"-":
                    pass
                for _ in range(50):
                    if time.monotonic() >= deadline:
                        break
                    start = time.perf_counter()
                    sock.sendall(b"NOOP\r\n")
                    line = f.readline()
                    latencies.append(time.perf_counter() - start)
                    if not line.startswith(b"250"):
                        failures.append(f"NOOP -> {line[:60]!r}")
                        break
                    time.sleep(args.interval)
                sock.sendall(b"QUIT\r\n")
                f.readline()
        except OSError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(args.interval)
    Path(args.out).write_text(json.dumps({"latencies": latencies, "failures": failures}))
    return 0


# --------------------------------------------------------------------------- the checker

_TRACE = re.compile(rb"(?i)(return-path|received|authentication-results)[ \t]*:")


def strip_trace(stored: bytes) -> bytes:
    """The message as the client sent it: drop the trace fields smtpx prepended."""
    pos = 0
    while _TRACE.match(stored, pos):
        end = stored.find(b"\r\n", pos)
        while end >= 0 and stored[end + 2 : end + 3] in (b" ", b"\t"):
            end = stored.find(b"\r\n", end + 2)
        if end < 0:
            return stored[pos:]
        pos = end + 2
    return stored[pos:]


_TOKEN = re.compile(rb"Message-ID: <([A-Za-z0-9-]+)@soak\.test>")


def check(maildir: Path, outcomes: dict[str, list[Any]]) -> dict[str, Any]:
    stored: dict[str, list[tuple[str, int]]] = {}
    unexpected: list[str] = []
    for path in (maildir / "new").iterdir():
        body = strip_trace(path.read_bytes())
        m = _TOKEN.search(body)
        if m is None:
            unexpected.append(path.name)
            continue
        stored.setdefault(m.group(1).decode(), []).append((digest(body), len(body)))
    kinds = Counter(kind for kind, _, _ in outcomes.values())
    lost, duplicated, mismatched, wrongly_stored, doubt_stored = [], [], [], [], 0
    for token, copies in stored.items():
        if len(copies) > 1:
            duplicated.append(token)
        outcome = outcomes.get(token)
        if outcome is None or outcome[0] in (REFUSED, ABORTED, SMUGGLED):
            wrongly_stored.append(token)
            continue
        if outcome[0] == DOUBT:
            doubt_stored += 1
        if any(sha != outcome[1] for sha, _ in copies):
            mismatched.append(token)
    for token, (kind, _, _) in outcomes.items():
        if kind == ACKED and token not in stored:
            lost.append(token)
    return {
        "sent": len(outcomes) - kinds[SMUGGLED],
        "acknowledged": kinds[ACKED],
        "refused": kinds[REFUSED],
        "aborted": kinds[ABORTED],
        "in_doubt": kinds[DOUBT],
        "in_doubt_stored": doubt_stored,
        "smuggling_markers": kinds[SMUGGLED],
        "stored": sum(len(v) for v in stored.values()) + len(unexpected),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "mismatched": len(mismatched),
        "unexpected": len(unexpected) + len(wrongly_stored),
        "tmp_left": len(list((maildir / "tmp").iterdir())),
        "examples": {
            "lost": lost[:5],
            "duplicated": duplicated[:5],
            "mismatched": mismatched[:5],
            "unexpected": (unexpected + wrongly_stored)[:5],
        },
    }


# --------------------------------------------------------------------------- orchestration


def cpu_seconds(pid: int) -> float:
    """User and system CPU time ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_counts(pid: int) -> tuple[int, int, int]:
    """RSS (KiB), open descriptors and threads of ``pid``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sampler:
    pid: int
    interval: float
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    start: float = field(default_factory=time.monotonic)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic() - self.start, *proc_counts(self.pid)))


def warm_up(port: int, ca: str, dkim_key: bytes, count: int) -> dict[str, list[Any]]:
    """Concurrent honest messages (signed too) so that the thread pools reach their size."""
    outcomes: dict[str, list[Any]] = {}

    async def one(i: int) -> None:
        rng = random.Random(f"warm-{i}")
        c = ClientCtx(
            port,
            rng,
            f"warm{i}",
            ssl.create_default_context(cafile=ca),
            dkim_key,
            outcomes,
            Counter(),
        )
        try:
            await c.connect()
            await c.ehlo()
            await c.transaction(("good.test", "bigkey.test")[i % 2], sign=1.0)
            await c.quit()
        finally:
            c.close()

    async def all_of_them() -> None:
        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(all_of_them())
    return outcomes


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def orchestrate(args: argparse.Namespace) -> int:
    import trustme  # noqa: PLC0415
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    from tests.authres.dnsserver import LoopbackDNSServer  # noqa: PLC0415

    duration = args.seconds if args.seconds else args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="smtpx-soak-"))
    maildir = work / "maildir"
    ca = trustme.CA()
    cert = ca.issue_cert(HOSTNAME, "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(work / "server.pem"))
    cert.private_key_pem.write_to_path(str(work / "server.key"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    dkim_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    (work / "dkim.pem").write_bytes(dkim_key)
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    zone, slow, servfail = build_zone(public)
    from smtpx.auth import hash_password  # noqa: PLC0415 (the smtpx under test: sys.path)

    auth_file = work / "auth"
    auth_file.write_text(f"{AUTH_USER}:{hash_password(AUTH_PASSWORD)}\n")
    dns = LoopbackDNSServer(zone, timeout_names=slow, servfail_names=servfail)
    dns.start()
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "smtpx",
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--hostname",
        HOSTNAME,
        "--maildir",
        str(maildir),
        "--authres",
        "--dns-server",
        f"127.0.0.1:{dns.port}",
        "--tls-cert",
        str(work / "server.pem"),
        "--tls-key",
        str(work / "server.key"),
        "--max-size",
        str(MAX_SIZE),
        "--max-clients",
        str(args.clients + 100),
        "--timeout",
        str(args.timeout),
        "--log-level",
        "WARNING",
        "--auth-file",
        str(auth_file),
        *args.server_arg,
    ]
    # An inherited PYTHONPATH comes first (the test suite points it at the smtpx under test).
    path = [p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    log_path = work / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed at the end)
    server = subprocess.Popen(argv, cwd=work, env=env, stderr=log, stdout=log)
    print(f"soak: server pid {server.pid} on 127.0.0.1:{port}, DNS on {dns.port}, work {work}")
    summary: dict[str, Any] = {"duration_s": duration, "clients": args.clients, "procs": args.procs}
    ok = True
    clients: list[subprocess.Popen[bytes]] = []
    probes: list[subprocess.Popen[bytes]] = []
    control: subprocess.Popen[bytes] | None = None
    control_port = free_port()
    if args.control:
        # The control: an idle smtpx on the same machine, at the same priority, probed the same
        # way. What its probe sees is the machine's share of the latency (scheduling behind
        # other processes), not the load's.
        control_argv = [*argv[:4], "--addr", f"127.0.0.1:{control_port}", "--hostname"]
        control_argv += ["control.test", "--maildir", str(work / "control"), "--log-level"]
        control = subprocess.Popen([*control_argv, "WARNING"], cwd=work, env=env)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"soak: the server did not start; see {log_path}") from None
                time.sleep(0.1)
        start_counts = proc_counts(server.pid)
        warm = warm_up(port, str(work / "ca.pem"), dkim_key, 48)
        time.sleep(1.0)
        base = proc_counts(server.pid)
        summary["start"] = dict(zip(("rss_kib", "fds", "threads"), start_counts, strict=True))
        summary["baseline"] = dict(zip(("rss_kib", "fds", "threads"), base, strict=True))
        sampler = Sampler(server.pid, args.sample)
        threading.Thread(target=sampler.run, daemon=True).start()
        me = [sys.executable, str(Path(__file__).resolve())]
        targets = [(port, "probe.json")] + ([(control_port, "control.json")] if control else [])
        for target, out in targets:
            probe_argv = [*me, "--role", "probe", "--port", str(target), "--interval", "0.2"]
            probe_argv += ["--duration", str(duration), "--out", str(work / out)]
            probes.append(subprocess.Popen(probe_argv))
        per = [
            args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
        ]
        for i, n in enumerate(per):
            clients.append(
                subprocess.Popen(
                    [
                        *me,
                        "--role",
                        "client",
                        "--proc",
                        str(i),
                        "--port",
                        str(port),
                        "--clients",
                        str(n),
                        "--duration",
                        str(duration),
                        "--seed",
                        str(args.seed),
                        "--think",
                        str(args.think),
                        "--max-sessions",
                        str(args.max_sessions // args.procs),
                        "--ca",
                        str(work / "ca.pem"),
                        "--dkim-key",
                        str(work / "dkim.pem"),
                        "--out",
                        str(work / f"client{i}.json"),
                    ]
                )
            )
        load_start = time.monotonic() - sampler.start
        cpu_start = cpu_seconds(server.pid)
        summary["load1_before"] = os.getloadavg()[0]
        for proc in clients:
            proc.wait(timeout=duration + 400)
        for probe in probes:
            probe.wait(timeout=duration + 120)
        load_end = time.monotonic() - sampler.start
        summary["server_cpu_percent"] = round(
            100 * (cpu_seconds(server.pid) - cpu_start) / (load_end - load_start), 1
        )
        # Let the server drop what the clients left (timeouts), then read the end counts.
        # Threads are not waited for: the pools keep the threads they grew (up to their
        # fixed size), so the thread count is compared with the maximum instead.
        settle_end = time.monotonic() + max(30.0, 3 * args.timeout)
        end = proc_counts(server.pid)
        while time.monotonic() < settle_end and end[1] != base[1]:
            time.sleep(0.5)
            end = proc_counts(server.pid)
        time.sleep(1.0)
        end = proc_counts(server.pid)
        sampler.stop.set()
        summary["end"] = dict(zip(("rss_kib", "fds", "threads"), end, strict=True))
        samples = sampler.samples
        mark = load_start + min(args.rss_mark, (load_end - load_start) / 2)
        during = [s for s in samples if load_start <= s[0] <= load_end]
        at_mark = min(during or samples, key=lambda s: abs(s[0] - mark))
        summary["rss_mark_s"] = round(at_mark[0] - load_start, 1)
        summary["rss_at_mark_kib"] = at_mark[1]
        summary["rss_end_of_load_kib"] = (during or samples)[-1][1]
        summary["rss_after_mark_max_kib"] = max(
            s[1] for s in (during or samples) if s[0] >= at_mark[0]
        )
        summary["fds_max"] = max(s[2] for s in samples) if samples else None
        summary["threads_max"] = max(s[3] for s in samples) if samples else None
        summary["rss_series_kib"] = [(round(t - load_start), r) for t, r, _, _ in samples][
            :: max(1, len(samples) // 40)
        ]
        server.send_signal(signal.SIGTERM)
        summary["server_exit"] = server.wait(timeout=60)
    finally:
        if control is not None:
            control.terminate()
            control.wait(timeout=30)
        for proc in [*clients, *probes, server]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        dns.stop()
        log.close()
    outcomes: dict[str, list[Any]] = dict(warm)
    stats: Counter[str] = Counter()
    for i in range(args.procs):
        part = json.loads((work / f"client{i}.json").read_text())
        outcomes.update(part["outcomes"])
        stats.update(part["stats"])
    summary.update(check(maildir, outcomes))
    summary["probe"] = probe_summary(work / "probe.json")
    if control is not None:
        summary["control_probe"] = probe_summary(work / "control.json")
    server_log = log_path.read_text(errors="replace")
    summary["server_log"] = {
        "tracebacks": server_log.count("Traceback"),
        "errors": sum(" ERROR " in line for line in server_log.splitlines()),
        "lines": server_log.count("\n"),
    }
    summary["client_stats"] = dict(sorted(stats.items()))
    summary["load1_after"] = os.getloadavg()[0]
    ok = (
        summary["lost"] == 0
        and summary["duplicated"] == 0
        and summary["mismatched"] == 0
        and summary["unexpected"] == 0
        and summary["tmp_left"] == 0
        and summary["server_exit"] == 0
        and stats["malformed_reply"] == 0
    )
    summary["ok"] = ok
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.keep:
        print(f"soak: kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def probe_summary(path: Path) -> dict[str, Any]:
    result = json.loads(path.read_text())
    lat = result["latencies"]
    return {
        "noops": len(lat),
        "worst_ms": round(max(lat) * 1000, 1) if lat else None,
        "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
        "p50_ms": round(percentile(lat, 0.5) * 1000, 1),
        "over_50ms": sum(x > 0.05 for x in lat),
        "failures": result["failures"][:10],
    }


def print_summary(s: dict[str, Any]) -> None:
    p = s["probe"]
    c = s.get("control_probe")
    control = (
        f"  control probe (an idle smtpx, same machine and priority): worst {c['worst_ms']} ms,"
        f" p99 {c['p99_ms']} ms, p50 {c['p50_ms']} ms, over 50 ms {c['over_50ms']}\n"
        if c
        else ""
    )
    print(
        f"soak: {s['duration_s']:g} s, {s['clients']} clients in {s['procs']} process(es)\n"
        f"  sent {s['sent']}  acknowledged {s['acknowledged']}  stored {s['stored']}"
        f"  lost {s['lost']}  duplicated {s['duplicated']}  mismatched {s['mismatched']}"
        f"  unexpected {s['unexpected']}  tmp/ left {s['tmp_left']}\n"
        f"  refused {s['refused']}  aborted {s['aborted']}  in doubt {s['in_doubt']}"
        f" (stored {s['in_doubt_stored']})  smuggling/injection attempts {s['smuggling_markers']}\n"
        f"  RSS: start {s['start']['rss_kib']} KiB, at {s['rss_mark_s']} s {s['rss_at_mark_kib']}"
        f" KiB, end of load {s['rss_end_of_load_kib']} KiB (max after mark"
        f" {s['rss_after_mark_max_kib']}), after settle {s['end']['rss_kib']} KiB\n"
        f"  fds: start {s['start']['fds']}, baseline {s['baseline']['fds']}, max {s['fds_max']},"
        f" end {s['end']['fds']}; threads: start {s['start']['threads']},"
        f" baseline {s['baseline']['threads']}, max {s['threads_max']}, end {s['end']['threads']}\n"
        f"  probe NOOP: {p['noops']} samples, worst {p['worst_ms']} ms, p99 {p['p99_ms']} ms,"
        f" p50 {p['p50_ms']} ms, over 50 ms {p['over_50ms']}, failures {len(p['failures'])}\n"
        f"{control}"
        f"  server: exit {s['server_exit']}, log tracebacks {s['server_log']['tracebacks']},"
        f" ERROR lines {s['server_log']['errors']}, CPU {s['server_cpu_percent']}% of one core"
        f" during the load; machine load average {s['load1_before']:.2f} at the start,"
        f" {s['load1_after']:.2f} at the end\n"
        f"  {'OK' if s['ok'] else 'FAILED'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--seconds", type=float, default=0.0, help="load duration, overrides")
    parser.add_argument("--clients", type=int, default=300, help="concurrent clients in all")
    parser.add_argument("--procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between sessions")
    parser.add_argument(
        "--max-sessions", type=int, default=1_000_000, help="sessions in all (a count bound)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="the server's --timeout")
    parser.add_argument("--sample", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--rss-mark", type=float, default=120.0, help="RSS mark (default 2 min)")
    parser.add_argument("--seed", default="soak")
    parser.add_argument("--server-arg", action="append", default=[], help="extra serve flag")
    parser.add_argument("--json", help="write the summary here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (Maildir, log)")
    parser.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="no idle control server and probe (they tell the machine's latency from the load's)",
    )
    # Internal: the client and probe processes.
    parser.add_argument("--role", choices=("main", "client", "probe"), default="main")
    parser.add_argument("--proc", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--ca", default="")
    parser.add_argument("--dkim-key", default="")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.role == "client":
        return client_main(args)
    if args.role == "probe":
        return probe_main(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
