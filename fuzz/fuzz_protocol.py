"""Fuzz target: the sans-IO protocol core (``smtpx.protocol.Connection``).

Input: the client's byte stream, then (read from the end by ``FuzzedDataProvider``) four
chunk lengths and one flags byte choosing the config (size limit, recipients, TLS, XCLIENT,
line-ending policy). Only well-formed, CRLF-terminated replies may come out, no exception may
escape, and the command buffer must stay under its cap.

Run: ``python -m fuzz.fuzz_protocol`` (see fuzz/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import atheris

from fuzz._harness import Budget, Target, main, split_chunks
from fuzz._smtp import config_from_flags, run_session

__all__ = ["TARGET", "classify", "encode", "test_one_input"]

_CUTS = 4


def encode(stream: bytes, flags: int = 0, cuts: Sequence[int] = (7, 64, 1, 200)) -> bytes:
    """A seed input: ``stream`` cut and configured as given."""
    return stream + bytes(cuts[:_CUTS]) + bytes([flags])


def test_one_input(data: bytes) -> None:
    """Drive one session over ``data``; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    cuts = fdp.ConsumeIntListInRange(_CUTS, 1, 255)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    config, tls_active, xclient = config_from_flags(flags)
    run_session(split_chunks(stream, cuts), config, tls_active=tls_active, xclient=xclient)


def classify(exc: BaseException) -> int | None:
    """Issue-9 item of a known exception: ``SIZE=²`` makes ``int()`` fail (item 5)."""
    if isinstance(exc, ValueError) and "invalid literal for int()" in str(exc):
        return 5
    return None


TARGET = Target(
    name="protocol",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.25, per_byte_s=40e-6),
    trailer=5,
    scale_bytes=2048,
    max_len=8192,
    classify=classify,
)

if __name__ == "__main__":
    main(TARGET)
