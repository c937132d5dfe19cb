"""Fuzz target: XCLIENT through the protocol core, for a trusted peer.

Input: the XCLIENT arguments and whatever follows (a stream of commands), then chunk
lengths and a flags byte read from the end. The stream is prefixed with ``EHLO`` and
``XCLIENT `` when the flags say so, so most inputs reach the attribute parser. Besides the
protocol invariants, every accepted attribute must be safe to write into a Received header:
no control characters (issue 9 item 14), no IPv6 zone id in ADDR (item 11), and a HELO that
passes the EHLO syntax check (item 12).

Run: ``python -m fuzz.fuzz_xclient`` (see fuzz/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import atheris

from fuzz._harness import Budget, Target, main, split_chunks
from fuzz._smtp import config_from_flags, run_session
from fuzz.fuzz_protocol import classify

__all__ = ["TARGET", "encode", "test_one_input"]

_CUTS = 3
_PREFIXES = (b"", b"XCLIENT ", b"EHLO client.test\r\nXCLIENT ", b"HELO c\r\nXCLIENT NAME=x ")


def encode(stream: bytes, flags: int = 1, cuts: Sequence[int] = (64, 5, 255)) -> bytes:
    """A seed input: ``stream`` after the prefix chosen by ``flags & 3``."""
    return stream + bytes(cuts[:_CUTS]) + bytes([flags])


def test_one_input(data: bytes) -> None:
    """Drive one session with XCLIENT enabled and trusted; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    cuts = fdp.ConsumeIntListInRange(_CUTS, 1, 255)
    stream = _PREFIXES[flags & 3] + fdp.ConsumeBytes(fdp.remaining_bytes())
    config, tls_active, _ = config_from_flags(flags & 0xE4)
    run_session(split_chunks(stream, cuts), config, tls_active=tls_active, xclient=True)


TARGET = Target(
    name="xclient",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.25, per_byte_s=40e-6),
    trailer=4,
    scale_bytes=2048,
    max_len=4096,
    classify=classify,
)

if __name__ == "__main__":
    main(TARGET)
