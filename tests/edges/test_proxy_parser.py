"""The sans-IO PROXY protocol parser (HAProxy proxy-protocol.txt, v1 and v2)."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpx._proxy import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyError,
    ProxyHeader,
    ProxyHeaderReader,
    crc32c,
    parse_v1,
    parse_v2,
)


def v2(
    *,
    ver_cmd: int = 0x21,
    fam: int = 0x11,
    src: str = "192.0.2.7",
    dst: str = "198.51.100.1",
    sport: int = 4242,
    dport: int = 25,
    tlvs: bytes = b"",
    addr: bytes | None = None,
) -> bytes:
    if addr is None:
        if fam >> 4 == 1:
            addr = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            addr += struct.pack("!HH", sport, dport)
        elif fam >> 4 == 2:
            addr = ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            addr += struct.pack("!HH", sport, dport)
        else:
            addr = b""
    body = addr + tlvs
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def read_all(stream: bytes) -> tuple[ProxyHeader | None, int]:
    """Drive the reader like the session does; returns the header and bytes consumed."""
    reader = ProxyHeaderReader()
    pos = 0
    while pos < len(stream):
        peeked = stream[pos : pos + reader.peek_size()]
        n = reader.consumable(peeked)
        assert 1 <= n <= len(peeked)
        header = reader.feed(stream[pos : pos + n])
        pos += n
        if header is not None:
            return header, pos
    return None, pos


# ------------------------------------------------------------------------------- v1
def test_v1_tcp4() -> None:
    h = parse_v1(b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n")
    assert h == ProxyHeader(1, False, ("192.0.2.7", 4242), ("198.51.100.1", 25))


def test_v1_tcp6() -> None:
    h = parse_v1(b"PROXY TCP6 2001:db8:0::7 2001:db8::1 65535 0\r\n")
    assert h.source == ("2001:db8::7", 65535) and h.destination == ("2001:db8::1", 0)


def test_v1_unknown_keeps_real_endpoints() -> None:
    assert parse_v1(b"PROXY UNKNOWN\r\n") == ProxyHeader(1, True)
    worst = b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(worst) == V1_MAX_LENGTH  # the spec's worst case fits exactly
    assert parse_v1(worst).local


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242\r\n",  # missing port
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25 9\r\n",  # extra field
        b"PROXY TCP4 2001:db8::1 198.51.100.1 4242 25\r\n",  # family mismatch
        b"PROXY TCP6 192.0.2.7 198.51.100.1 4242 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 25\r\n",  # port out of range
        b"PROXY TCP4 192.0.2.7 198.51.100.1 -1 25\r\n",
        b"PROXY TCP4 host 198.51.100.1 4242 25\r\n",  # not an address
        b"PROXY TCP4  192.0.2.7 198.51.100.1 4242 25\r\n",  # double space
        b"PROXY UDP4 192.0.2.7 198.51.100.1 4242 25\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\n",  # LF without CR
        b"proxy TCP4 192.0.2.7 198.51.100.1 4242 25\r\n",  # case matters
        b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",  # over 107 bytes
        b"PROXY TCP6 fe80::1%eth0 2001:db8::1 4242 25\r\n",  # zone id (forges Received)
        b"PROXY TCP6 2001:db8::7 fe80::1%x 4242 25\r\n",
        b"PROXY TCP6 fe80::1%\rX 2001:db8::1 4242 25\r\n",  # CR in the zone
        b"PROXY TCP6 fe80::1% 2001:db8::1 4242 25\r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v1(line)
    with pytest.raises(ProxyError):
        read_all(line + b"EHLO x\r\n")


def test_v1_without_line_end_is_cut_at_107_bytes() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY UNKNOWN " + b"a" * 92) is None  # 106 bytes: could still end
    with pytest.raises(ProxyError, match="107"):
        reader.feed(b"a")


@pytest.mark.parametrize("start", [b"EHLO client\r\n", b"GET / HTTP/1.0\r\n", b"\x16\x03\x01"])
def test_not_a_header_fails_early(start: bytes) -> None:
    with pytest.raises(ProxyError):
        ProxyHeaderReader().feed(start[:6])


# ------------------------------------------------------------------------------- v2
def test_v2_inet() -> None:
    h = parse_v2(v2())
    assert h == ProxyHeader(2, False, ("192.0.2.7", 4242), ("198.51.100.1", 25))


def test_v2_inet6_and_tlvs() -> None:
    tlvs = tlv(0x01, b"smtp") + tlv(0x02, b"mx.example") + tlv(0x05, b"\x00\x01") + tlv(0x04, b"")
    h = parse_v2(v2(fam=0x21, src="2001:db8::7", dst="2001:db8::1", tlvs=tlvs))
    assert h.source == ("2001:db8::7", 4242)
    assert h.tlvs == ((1, b"smtp"), (2, b"mx.example"), (5, b"\x00\x01"), (4, b""))


def test_v2_local_ignores_addresses() -> None:
    assert parse_v2(v2(ver_cmd=0x20, fam=0x00)) == ProxyHeader(2, True)
    # LOCAL with an address block (HAProxy health checks may send one): still local.
    assert parse_v2(v2(ver_cmd=0x20)).local


def test_v2_unspec_and_unix_keep_real_endpoints() -> None:
    assert parse_v2(v2(fam=0x00)) == ProxyHeader(2, False)
    unix = parse_v2(v2(fam=0x31, addr=b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")))
    assert unix.source is None and not unix.local


def test_v2_crc32c() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value
    blank = v2(tlvs=tlv(0x03, b"\0\0\0\0"))
    good = v2(tlvs=tlv(0x03, struct.pack("!I", crc32c(blank))))
    assert parse_v2(good).source == ("192.0.2.7", 4242)
    with pytest.raises(ProxyError, match="CRC32C"):
        parse_v2(v2(tlvs=tlv(0x03, struct.pack("!I", crc32c(blank) ^ 1))))


@pytest.mark.parametrize(
    "header",
    [
        v2(ver_cmd=0x11),  # version 1 in binary form
        v2(ver_cmd=0x22),  # unknown command
        v2(fam=0x41),  # unknown family
        v2(fam=0x12),  # DGRAM
        v2(addr=b"\x01\x02\x03"),  # address block shorter than INET needs
        v2(tlvs=b"\x01\x00"),  # truncated TLV header
        v2(tlvs=b"\x01\x00\x09abc"),  # TLV longer than the header
    ],
)
def test_v2_malformed(header: bytes) -> None:
    with pytest.raises(ProxyError):
        parse_v2(header)
    with pytest.raises(ProxyError):
        read_all(header + b"EHLO x\r\n")


# ---------------------------------------------------------------- reading the stream
@given(
    st.sampled_from(
        [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n",
            b"PROXY UNKNOWN\r\n",
            v2(),
            v2(ver_cmd=0x20, fam=0x00),
            v2(fam=0x21, src="2001:db8::7", dst="::1", tlvs=tlv(0x02, b"x" * 300)),
        ]
    ),
    st.binary(max_size=64),
)
def test_reader_never_consumes_past_the_header(header: bytes, after: bytes) -> None:
    # Whatever follows (e.g. a TLS ClientHello) must stay unread for the next layer.
    parsed, used = read_all(header + after)
    assert parsed is not None and used == len(header)


@given(st.binary(max_size=300))
def test_reader_only_raises_proxy_error(data: bytes) -> None:
    with contextlib.suppress(ProxyError):
        read_all(data)


# ------------------------------------------------- mutation fuzz from valid headers
# Random bytes almost never start with a valid signature, so they only exercise the first
# check. These start from valid v1 and v2 headers and damage them, so every later check
# (fields, addresses, ports, lengths, TLVs, CRC) sees near-valid input.
VALID = [
    b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n",
    b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
    v2(),
    v2(fam=0x21, src="2001:db8::7", dst="::1", tlvs=tlv(0x02, b"mx.example") + tlv(0x05, b"id")),
    v2(ver_cmd=0x20, fam=0x00),
    v2(fam=0x00),
    v2(tlvs=tlv(0x20, b"\x07\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))),
]
VALID.append(v2(tlvs=tlv(0x03, struct.pack("!I", crc32c(v2(tlvs=tlv(0x03, b"\0\0\0\0")))))))
# Bytes that matter to the grammar: separators, line ends, zone and scope marks, digits and
# hex at the edges of their ranges, NUL, high bytes.
TOKENS = [b" ", b"  ", b"\r", b"\n", b"\r\n", b"%", b"%eth0", b"%\r\n", b":", b"::", b".", b"0"]
TOKENS += [b"9", b"65536", b"-1", b"+1", b"f", b"g", b"\x00", b"\xff", b"\x80", b"\x21", b"\x11"]


def check_outcome(stream: bytes) -> None:
    """The reader either refuses with ProxyError or returns a header that is sane to use."""
    try:
        header, used = read_all(stream)
    except ProxyError:
        return
    if header is None:
        return
    # What follows the header never changes the result (it belongs to the next layer).
    assert read_all(stream[:used]) == (header, used)
    for endpoint in (header.source, header.destination):
        if endpoint is None:
            continue
        host, port = endpoint
        # A canonical address and nothing else: no zone id, no CR/LF, no space to forge a
        # Received line with.
        assert "%" not in host and ipaddress.ip_address(host).compressed == host, host
        assert 0 <= port <= 65535


def test_every_single_edit_of_a_valid_header() -> None:
    # Exhaustive and deterministic: each token inserted at, or replacing the byte at, every
    # position of every valid header, plus every truncation.
    parsed = 0
    for base in VALID:
        for pos in range(len(base) + 1):
            cases = [base[:pos]]
            for token in TOKENS:
                cases.append(base[:pos] + token + base[pos:])
                cases.append(base[:pos] + token + base[pos + 1 :])
            for case in cases:
                check_outcome(case + b"EHLO x\r\n")
                with contextlib.suppress(ProxyError):
                    parsed += read_all(case)[0] is not None
    # The edits reach past the signature: many damaged headers still parse.
    assert parsed > 1000


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "replace", "delete", "truncate"]))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS) | st.binary(max_size=4))
        elif kind == "replace":
            data[pos : pos + 1] = draw(st.sampled_from(TOKENS))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data) + draw(st.binary(max_size=16))


@given(damaged())
def test_damaged_headers_only_raise_proxy_error(stream: bytes) -> None:
    check_outcome(stream)
