"""Fuzz target: the DATA reader twins, run differentially.

Input: the DATA stream, then (read from the end) the size limit, the line-ending policy and
four chunk lengths. Every twin (pure, compiled, and the sanitizer build when
``SMTPX_FUZZ_DEBUG_BUILD`` is set) reads the same chunks; any difference in bytes consumed,
``done``, ``size``, the result or the exception type is a crash. The pure twin is also held to
the contract in ``smtpx._abc.DataReaderLike`` (consumption, feeding after the end).

Run: ``python -m fuzz.fuzz_reader_diff`` (see fuzz/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import atheris

from fuzz._harness import Budget, Target, check, main, split_chunks
from fuzz._twins import Twin, twins

__all__ = ["TARGET", "encode", "test_one_input"]

_CUTS = 4
_LIMITS = (0, 1, 5, 16, 64, 300, 4096, 1 << 20)
_TWINS: list[Twin] = []


def encode(stream: bytes, flags: int = 7, cuts: Sequence[int] = (3, 64, 1, 200)) -> bytes:
    """A seed input: ``flags & 7`` picks the limit, ``flags & 8`` normalizes line endings."""
    return stream + bytes(cuts[:_CUTS]) + bytes([flags])


def _run(twin: Twin, chunks: list[bytes], limit: int, normalize: bool) -> list[object]:
    """What one twin does with the chunks, as a list of comparable observations."""
    reader = twin.reader(limit, normalize)
    trace: list[object] = []
    for chunk in chunks:
        was_done = reader.done
        used = reader.feed(chunk)
        check(0 <= used <= len(chunk), f"{twin.name}: feed() consumed {used} of {len(chunk)}")
        check(not was_done or used == 0, f"{twin.name}: consumed {used} after done")
        check(reader.done or used == len(chunk), f"{twin.name}: stopped early, not done")
        trace.append((used, reader.done, reader.size))
    if reader.done:
        try:
            trace.append(("ok", reader.result()))
        except Exception as exc:
            trace.append(("raised", type(exc).__name__))
    return trace


def test_one_input(data: bytes) -> None:
    """Feed every twin the same chunks; raise on any disagreement."""
    if not _TWINS:
        _TWINS.extend(twins())
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    cuts = fdp.ConsumeIntListInRange(_CUTS, 1, 255)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    chunks = list(split_chunks(stream, cuts))
    limit, normalize = _LIMITS[flags & 7], bool(flags & 8)
    reference = _run(_TWINS[0], chunks, limit, normalize)
    for twin in _TWINS[1:]:
        got = _run(twin, chunks, limit, normalize)
        check(
            got == reference,
            f"{twin.name} differs from {_TWINS[0].name} (limit={limit}, normalize={normalize},"
            f" chunks={[len(c) for c in chunks]}):\n  {reference!r}\n  {got!r}",
        )


TARGET = Target(
    name="reader_diff",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.1, per_byte_s=20e-6),
    trailer=5,
    scale_bytes=2048,
    max_len=65536,
)

if __name__ == "__main__":
    main(TARGET)
