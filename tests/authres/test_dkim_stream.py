"""The DKIM body hash of a spooled message, streamed in pieces (issue 14).

The streamed canonicaliser must give dkimpy's bytes for the whole body wherever the pieces are
cut: a CRLF, a run of white space or the empty lines at the end split between two pieces are
the classic bugs. Every cut point of small vectors is checked against the in-memory result,
then random bodies at random cuts, then whole verifications (in memory vs streamed).
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import dkim as dkimpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpx._spool import Spool
from smtpx.address import Address
from smtpx.authres import dkim
from smtpx.authres._middleware import authentication_results
from smtpx.authres.dkim import _BodyCanon, _stream_body_hashes
from smtpx.envelope import Envelope
from tests.authres.dnsserver import DNSServerFactory
from tests.authres.test_dkim import GO_ZONE, MAIL, TEST_PRIVATE_KEY_PEM
from tests.scaling import assert_linear

MAIL_HEAD = b"From: Joe <joe@football.example.com>\nTo: Suzie <suzie@example.net>\nSubject: big\n\n"

VECTORS = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"a",
    b"a\r\n",
    b"a\r\n\r\n",
    b"a \r\n",
    b"a \t \r\nb\r\n",
    b"  \r\n\r\n",
    b"a  b\t\tc\r\n",
    b"a\r\n \r\n\t\r\n",
    b"a   ",
    b"a\r\n  ",
    b"a\r",
    b"a \r",
    b"a\rb\r\n",
    b"a\r\r\n\r\n",
    b"a\nb\n\n",
    b"a \n \n",
    b"\r",
    b"\n",
    b" ",
    b"x\r\n\r\n y \r\n\r\n",
    b"\n\r ",
    b"a\r\n\r \r\n",
]


def in_memory(body: bytes, canon: str, length: int | None = None) -> bytes:
    """What the in-memory path hashes: smtpx's line-end normalisation, then dkimpy."""
    normal = body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    policy = dkimpy.CanonicalizationPolicy.from_c_value(f"simple/{canon}".encode())
    out = policy.canonicalize_body(normal)
    return hashlib.sha256(out if length is None else out[:length]).digest()


def streamed(pieces: list[bytes], canon: str, length: int | None = None) -> bytes:
    hasher = _BodyCanon(canon == "relaxed", length)
    for piece in pieces:
        hasher.feed(piece)
    return hasher.digest()


@pytest.mark.parametrize("canon", ["simple", "relaxed"])
@pytest.mark.parametrize("body", VECTORS)
def test_every_cut_gives_the_in_memory_hash(body: bytes, canon: str) -> None:
    for length in (None, 0, 1, 3):
        want = in_memory(body, canon, length)
        assert streamed([body], canon, length) == want
        for i in range(len(body) + 1):
            for j in range(i, len(body) + 1):
                pieces = [body[:i], body[i:j], body[j:]]
                assert streamed(pieces, canon, length) == want, (pieces, length)
    # One byte at a time.
    assert streamed([body[i : i + 1] for i in range(len(body))], canon) == in_memory(body, canon)


PIECES = [b" ", b"\t", b"\r", b"\n", b"\r\n", b"a", b".", b"  \r\n", b"\r\n\r\n", b"\x00"]


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    relaxed=st.booleans(),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=60)),
)
def test_random_bodies_at_random_cuts(
    body: bytes, cuts: list[int], relaxed: bool, length: int | None
) -> None:
    canon = "relaxed" if relaxed else "simple"
    points = sorted(min(c, len(body)) for c in cuts)
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    assert streamed(pieces, canon, length) == in_memory(body, canon, length)


def test_streamed_hash_of_a_file_reads_from_the_body_offset() -> None:
    head = b"Subject: x\r\n\r\n"
    body = b"line \t one  \r\n" * 200_000 + b"\r\n\r\n"

    def opener() -> BinaryIO:
        return io.BytesIO(head + body)

    got = _stream_body_hashes(opener, len(head), [("relaxed", None), ("simple", 10)])
    assert got == {
        ("relaxed", None): in_memory(body, "relaxed"),
        ("simple", 10): in_memory(body, "simple", 10),
    }


@pytest.mark.parametrize(
    "unit",
    [b" ", b"\r\n", b"\r", b" \t\r\n", b"a \r\n\r\n"],
    ids=["spaces", "empty-lines", "bare-crs", "blank-lines", "mixed"],
)
def test_streamed_body_hash_is_linear(unit: bytes) -> None:
    # Hostile bodies: one long white-space run, a million empty lines, ... cost time linear
    # in their size (held runs are counted, never rebuilt or rescanned).
    def run(open_body: Callable[[], BinaryIO]) -> object:
        return _stream_body_hashes(open_body, 0, [("relaxed", None), ("simple", None)])

    assert_linear(lambda n: opener(unit * n), run, n=1_000_000 // len(unit))


def opener(message: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(message)


@pytest.mark.parametrize("canon", [("relaxed", "relaxed"), ("simple", "simple")])
async def test_streamed_verify_gives_the_in_memory_verdict(
    canon: tuple[str, str], dns_server: DNSServerFactory
) -> None:
    header = dkim.sign(
        MAIL,
        domain="example.org",
        selector="brisbane",
        private_key=TEST_PRIVATE_KEY_PEM,
        canonicalization=canon,
        header_keys=["From", "To", "Subject", "Date", "Message-ID"],
    )
    resolver = dns_server(GO_ZONE).resolver()
    for message in (
        header + MAIL,
        header + MAIL.replace(b"hungry", b"angry"),
        header + MAIL.replace(b"Subject: Is dinner ready?", b"Subject: Wire money"),
        header + MAIL + b"\r\n\r\n",  # empty lines at the end are not signed
    ):
        want = await dkim.verify(message, resolver=resolver)
        head = message[: dkim.DEFAULT_MAX_HEADER_BYTES + 4]
        got = await dkim.verify(head, resolver=resolver, open_message=opener(message))
        assert [(v.result, v.reason) for v in got] == [(v.result, v.reason) for v in want]


async def test_the_middleware_keeps_a_spooled_message_out_of_memory(
    dns_server: DNSServerFactory, tmp_path: Path
) -> None:
    # A 16 MiB signed message in a spool file: SPF, DKIM (pass) and the A-R rewrite allocate
    # a few MiB at most, in every thread, and never read the message whole.
    body = b"".join(b"%07d" % i + b"x" * 60 + b" \t \r\n" for i in range(240_000))
    message = (MAIL_HEAD + body).replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    signature = dkim.sign(
        message,
        domain="example.org",
        selector="brisbane",
        private_key=TEST_PRIVATE_KEY_PEM,
        header_keys=["From", "To", "Subject"],
    )
    forged = b"Authentication-Results: mx.test; dkim=pass\r\n"
    spool = Spool(str(tmp_path))
    spool.write(forged + signature + message)
    size = spool.size
    del body, message
    envelope = Envelope(
        remote_addr=("192.0.2.1", 25),
        mail_from=Address("joe@football.example.com"),
        helo="client.test",
    )
    envelope._set_spool(spool)
    resolver = dns_server(GO_ZONE).resolver()
    seen: list[str] = []

    async def handler(env: Envelope) -> None:
        with env.open() as f:
            head = f.read(8192).split(b"\r\n\r\n")[0]
        unfolded = head.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")
        seen.extend(
            line.decode() for line in unfolded.split(b"\r\n") if line.startswith(b"Authentication")
        )

    check = authentication_results("mx.test", resolver=resolver, timeout=60)(handler)
    tracemalloc.start()
    try:
        await check(envelope)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        spool.close()
    assert size > 16 << 20
    assert len(seen) == 1
    assert "dkim=pass" in seen[0]
    assert "header.d=example.org" in seen[0]
    assert peak < 4 << 20, peak  # the message is over 16 MiB
    assert envelope._joined is None  # data was never built
