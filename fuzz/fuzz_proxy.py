"""Fuzz target: the PROXY protocol v1/v2 parser (``smtpx._proxy``).

Input: the bytes a proxy would send, then (read from the end) peek sizes and a flags byte.
The flags can put a valid v1 or v2 prefix in front (with the v2 length fixed to what follows),
so most inputs get past the signature. The incremental reader is driven the way the session
drives it (peek, ``consumable``, read, ``feed``), and ``parse_v1``/``parse_v2`` are called on
the whole input. Only ``ProxyError`` may be raised, ``consumable`` must stay within what was
peeked, memory within the documented bound, and an accepted header must carry plain IP
addresses (no IPv6 zone id: issue 9 item 11) and ports in range.

Run: ``python -m fuzz.fuzz_proxy`` (see fuzz/README.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import atheris

from fuzz._harness import Budget, Target, check, main
from fuzz._smtp import safe_text
from smtpx._proxy import (
    V1_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyError,
    ProxyHeader,
    ProxyHeaderReader,
    parse_v1,
    parse_v2,
)

__all__ = ["TARGET", "encode", "test_one_input"]

_CUTS = 3
_V1_PREFIXES = (b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ")
# Spec 2.2: version 2 with command LOCAL (0x20) or PROXY (0x21); family/transport byte.
_V2_HEADS = (b"\x21\x11", b"\x21\x21", b"\x20\x00", b"\x21\x31")
# ProxyHeaderReader's docstring: v2 by its 16-bit length field (at most 65,551 bytes).
_MAX_BUFFERED = 16 + 0xFFFF


def encode(stream: bytes, flags: int = 0, cuts: Sequence[int] = (108, 16, 255)) -> bytes:
    """A seed input; ``flags & 7`` picks a prefix (4-7: v2 with the length fixed up)."""
    return stream + bytes(cuts[:_CUTS]) + bytes([flags])


def _prefixed(flags: int, rest: bytes) -> bytes:
    choice = flags & 7
    if choice < 4:
        return _V1_PREFIXES[choice] + rest
    head = V2_SIGNATURE + _V2_HEADS[choice - 4]
    return head + min(len(rest), 0xFFFF).to_bytes(2, "big") + rest


def _check_header(header: ProxyHeader) -> None:
    for endpoint in (header.source, header.destination):
        if endpoint is None:
            continue
        ip, port = endpoint
        check("%" not in ip and safe_text(ip), f"PROXY address with a zone id: {ip!r}", 11)
        check(str(ipaddress.ip_address(ip)) == ip, f"PROXY address not canonical: {ip!r}")
        check(0 <= port <= 65535, f"PROXY port out of range: {port}")


def _drive_reader(stream: bytes, cuts: Sequence[int]) -> None:
    reader = ProxyHeaderReader()
    pos = i = 0
    while pos < len(stream):
        want = reader.peek_size()
        check(want >= 1, f"peek_size() {want} before the header is complete")
        peeked = stream[pos : pos + min(want, max(1, cuts[i % len(cuts)]))]
        i += 1
        n = reader.consumable(peeked)
        check(1 <= n <= len(peeked), f"consumable() {n} of {len(peeked)} peeked")
        try:
            header = reader.feed(peeked[:n])
        except ProxyError:
            return
        pos += n
        check(pos <= _MAX_BUFFERED, f"{pos} bytes taken for one header")
        if header is not None:
            _check_header(header)
            # The reader stopped exactly at the end of what the one-shot parser accepts.
            whole = parse_v1(stream[:pos]) if header.version == 1 else parse_v2(stream[:pos])
            check(whole == header, f"reader and parse_v{header.version} disagree")
            if header.version == 1:
                check(pos <= V1_MAX_LENGTH, f"v1 header of {pos} bytes")
            return


def test_one_input(data: bytes) -> None:
    """Parse ``data`` incrementally and in one go; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    cuts = fdp.ConsumeIntListInRange(_CUTS, 1, 255)
    stream = _prefixed(flags, fdp.ConsumeBytes(fdp.remaining_bytes()))
    _drive_reader(stream, cuts)
    for parse in (parse_v1, parse_v2):
        try:
            header = parse(stream)
        except ProxyError:
            continue
        _check_header(header)


TARGET = Target(
    name="proxy",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.1, per_byte_s=20e-6),
    trailer=4,
    scale_bytes=4096,
    max_len=4096,
)

if __name__ == "__main__":
    main(TARGET)
