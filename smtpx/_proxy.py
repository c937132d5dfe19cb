"""HAProxy PROXY protocol v1 and v2 header parser, sans-IO.

The header (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) is the very first
thing a proxy sends, before the server speaks. This module only turns bytes into a
``ProxyHeader``; the session decides trust, time limits and what to do with the result.

The reader is built so that a driver never has to read past the end of the header: it asks
``consumable(peeked)`` how many of the bytes it peeked at belong to the header, reads exactly
that many and feeds them. This matters for implicit TLS, whose ClientHello may follow
the header in the same segment and must stay in the socket for the TLS layer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyError",
    "ProxyHeader",
    "ProxyHeaderReader",
    "crc32c",
    "parse_v1",
    "parse_v2",
]

# Spec 2.1: "a 108-byte buffer is always enough to store all the line and a trailing zero",
# so the line itself, CRLF included, is at most 107 bytes.
V1_MAX_LENGTH = 107
V1_SIGNATURE = b"PROXY "
# Spec 2.2: the 12-byte binary signature.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16

# Spec 2.2: address block sizes by family (high nibble of byte 14).
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0, 1, 2, 3
_ADDR_LEN = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}
_PROTO_UNSPEC, _PROTO_STREAM = 0, 1

# Spec 2.2.7: TLV types this parser looks at.
PP2_TYPE_CRC32C = 0x03


class ProxyError(ValueError):
    """The bytes are not a valid PROXY protocol header; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy told us about the connection it relays.

    Attributes:
        version: 1 (text) or 2 (binary).
        local: True for a v2 ``LOCAL`` command or a v1 ``UNKNOWN`` line (health checks and
            the like): the real connection endpoints stay in force.
        source: The original client ``(ip, port)``, or None when ``local`` or the family is
            unspecified or a UNIX socket.
        destination: The address the client connected to on the proxy, or None likewise.
        tlvs: v2 type-length-value extensions in wire order, e.g. ALPN (0x01), AUTHORITY
            (0x02), UNIQUE_ID (0x05), SSL (0x20).
    """

    version: int
    local: bool
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    tlvs: tuple[tuple[int, bytes], ...] = field(default=())


def _port(text: bytes) -> int:
    # Spec 2.1: ports are decimal numbers 0..65535.
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ProxyError(f"bad port {text[:8]!r}")
    return int(text)


def parse_v1(line: bytes) -> ProxyHeader:
    """Parse one complete v1 line, CRLF included.

    Raises:
        ProxyError: Not a valid v1 header.
    """
    if len(line) > V1_MAX_LENGTH:
        raise ProxyError("v1 header longer than 107 bytes")
    if not line.startswith(V1_SIGNATURE) or not line.endswith(b"\r\n"):
        raise ProxyError("v1 header must start with 'PROXY ' and end with CRLF")
    fields = line[len(V1_SIGNATURE) : -2].split(b" ")
    proto = fields[0]
    if proto == b"UNKNOWN":
        # Spec 2.1: the rest of an UNKNOWN line is ignored; use the real endpoints.
        return ProxyHeader(version=1, local=True)
    if proto not in (b"TCP4", b"TCP6") or len(fields) != 5:
        raise ProxyError("v1 header must be 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    want = 4 if proto == b"TCP4" else 6
    if b"%" in fields[1] or b"%" in fields[2]:
        # ipaddress accepts IPv6 zone ids ("fe80::1%eth0"); a zone names an interface of the
        # proxy's host, means nothing here, and would carry any bytes into Received lines.
        raise ProxyError("v1 address has a zone id")
    try:
        src = ipaddress.ip_address(fields[1].decode("ascii"))
        dst = ipaddress.ip_address(fields[2].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyError("v1 header has an invalid address") from exc
    if src.version != want or dst.version != want:
        raise ProxyError("v1 address family does not match the protocol")
    return ProxyHeader(
        version=1,
        local=False,
        source=(src.compressed, _port(fields[3])),
        destination=(dst.compressed, _port(fields[4])),
    )


def _parse_tlvs(data: bytes, base: int) -> list[tuple[int, int, bytes]]:
    # (type, offset of the value within the whole header, value)
    tlvs: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise ProxyError("truncated TLV")
        kind = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        end = pos + 3 + length
        if end > len(data):
            raise ProxyError("TLV longer than the header")
        tlvs.append((kind, base + pos + 3, data[pos + 3 : end]))
        pos = end
    return tlvs


def parse_v2(header: bytes) -> ProxyHeader:
    """Parse one complete v2 header (16 fixed bytes plus the length they announce).

    Raises:
        ProxyError: Not a valid v2 header.
    """
    if len(header) < V2_FIXED_LENGTH or not header.startswith(V2_SIGNATURE):
        raise ProxyError("not a v2 header")
    ver_cmd, fam = header[12], header[13]
    length = int.from_bytes(header[14:16], "big")
    if len(header) != V2_FIXED_LENGTH + length:
        raise ProxyError("v2 length does not match the header")
    if ver_cmd >> 4 != 2:
        raise ProxyError(f"unsupported v2 version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):  # spec 2.2: 0 LOCAL, 1 PROXY, anything else is rejected
        raise ProxyError(f"unknown v2 command {command}")
    family, proto = fam >> 4, fam & 0x0F
    if family not in _ADDR_LEN:
        raise ProxyError(f"unknown v2 address family {family}")
    addr_len = _ADDR_LEN[family]
    if length < addr_len:
        raise ProxyError("v2 address block shorter than its family needs")
    body = header[V2_FIXED_LENGTH:]
    parsed = _parse_tlvs(body[addr_len:], V2_FIXED_LENGTH + addr_len)
    for kind, at, value in parsed:
        if kind == PP2_TYPE_CRC32C:
            # Spec 2.2.7: the checksum covers the whole header with the CRC field zeroed.
            if len(value) != 4:
                raise ProxyError("CRC32C TLV must be 4 bytes")
            zeroed = header[:at] + b"\x00\x00\x00\x00" + header[at + 4 :]
            if crc32c(zeroed) != int.from_bytes(value, "big"):
                raise ProxyError("v2 CRC32C mismatch")
    tlvs = tuple((kind, value) for kind, _, value in parsed)
    if command == 0:
        # LOCAL: the proxy speaks for itself (health checks); keep the real endpoints.
        return ProxyHeader(version=2, local=True, tlvs=tlvs)
    if family in (_AF_UNSPEC, _AF_UNIX):
        # Spec 2.2: UNSPEC means "use the real endpoints"; a UNIX peer has no IP to record.
        return ProxyHeader(version=2, local=False, tlvs=tlvs)
    if proto != _PROTO_STREAM:
        raise ProxyError("SMTP needs a STREAM transport in the v2 header")
    if family == _AF_INET:
        src: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(body[0:4])
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(body[4:8])
        ports = body[8:12]
    else:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        ports = body[32:36]
    return ProxyHeader(
        version=2,
        local=False,
        source=(src.compressed, int.from_bytes(ports[0:2], "big")),
        destination=(dst.compressed, int.from_bytes(ports[2:4], "big")),
        tlvs=tlvs,
    )


class ProxyHeaderReader:
    """Accumulate the header of one connection without reading past its end.

    Use: peek at up to ``peek_size()`` bytes, take ``n = consumable(peeked)``, read exactly
    ``n`` bytes and ``feed`` them; repeat until ``feed`` returns the header. Memory stays
    bounded: v1 by 107 bytes, v2 by its 16-bit length field (at most 65,551 bytes).
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def _v2_total(self) -> int | None:
        if len(self._buf) < V2_FIXED_LENGTH:
            return None
        return V2_FIXED_LENGTH + int.from_bytes(self._buf[14:16], "big")

    def _is_v2(self, head: bytes) -> bool:
        n = min(len(head), len(V2_SIGNATURE))
        return n > 0 and head[:n] == V2_SIGNATURE[:n]

    def peek_size(self) -> int:
        """How many bytes are worth peeking at now."""
        total = self._v2_total()
        if total is not None and self._is_v2(bytes(self._buf[:12])):
            return total - len(self._buf)
        return V1_MAX_LENGTH + 1 - len(self._buf) if self._buf else V1_MAX_LENGTH + 1

    def consumable(self, peeked: bytes) -> int:
        """How many leading bytes of ``peeked`` (not yet consumed) belong to the header.

        Garbage is consumed too (``feed`` then fails), so the count is at least 1 whenever
        ``peeked`` is not empty.
        """
        if not peeked:
            return 0
        have = len(self._buf)
        head = bytes(self._buf[:V2_FIXED_LENGTH]) + peeked[: max(0, V2_FIXED_LENGTH - have)]
        if self._is_v2(head):
            if len(head) < V2_FIXED_LENGTH:
                return len(peeked)  # all of it is still inside the 16 fixed bytes
            total = V2_FIXED_LENGTH + int.from_bytes(head[14:16], "big")
            return max(1, min(len(peeked), total - have))
        # v1 (or garbage): everything up to and including the first LF.
        lf = peeked.find(b"\n")
        if lf >= 0:
            return lf + 1
        return max(1, min(len(peeked), V1_MAX_LENGTH + 1 - have))

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add consumed bytes.

        Returns:
            The header once complete, else None.

        Raises:
            ProxyError: The bytes cannot be a valid header (as early as that is known), or
                more bytes were fed than the header has.
        """
        self._buf += data
        buf = self._buf
        if self._is_v2(bytes(buf[:12])):
            total = self._v2_total()
            if total is None:
                return None
            if buf[12] >> 4 != 2:
                raise ProxyError(f"unsupported v2 version {buf[12] >> 4}")
            if len(buf) < total:
                return None
            if len(buf) > total:
                raise ProxyError("bytes fed past the end of the v2 header")
            return parse_v2(bytes(buf))
        n = min(len(buf), len(V1_SIGNATURE))
        if buf[:n] != V1_SIGNATURE[:n]:
            raise ProxyError("connection does not start with a PROXY header")
        lf = buf.find(b"\n")
        if lf < 0:
            if len(buf) >= V1_MAX_LENGTH:
                raise ProxyError("v1 header longer than 107 bytes")
            return None
        if lf != len(buf) - 1:
            raise ProxyError("bytes fed past the end of the v1 header")
        return parse_v1(bytes(buf))


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as the v2 CRC32C TLV uses."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
