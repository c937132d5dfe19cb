"""Fuzz target: the header-block parser twins, run differentially.

Input: a message (the whole input). Every twin's ``parse_header_block`` must return the same
fields and body offset, or raise the same exception type. The result is also checked against
the contract of ``smtpx._headers_py``: the offset is within the message, names are non-empty
and hold no colon or line break.

Run: ``python -m fuzz.fuzz_headers_diff`` (see fuzz/README.md).
"""

from __future__ import annotations

from fuzz._harness import Budget, Target, check, main
from fuzz._twins import Twin, twins

__all__ = ["TARGET", "encode", "test_one_input"]

_TWINS: list[Twin] = []


def encode(message: bytes) -> bytes:
    """A seed input: the message itself."""
    return message


def _shape(fields: list[tuple[bytes, bytes]], offset: int, size: int) -> int:
    """Branch on the shape of a result, so that libFuzzer sees progress.

    The pure twin is mostly one regex and the compiled one is C, so neither gives atheris
    branches to follow; these branches (this module is instrumented too) stand in for them.
    """
    shape = min(len(fields), 6)
    if offset == size:
        shape += 8
    elif offset == 0:
        shape += 16
    for name, value in fields[:6]:
        if not value:
            shape += 32
        elif b"\r" in value:
            shape += 64
        elif b" " in value or b"\t" in value:
            shape += 128
        if name.lower() in (b"from", b"to", b"subject", b"content-type", b"received"):
            shape += 256
        if any(c >= 0x80 for c in value[:64]):
            shape += 512
    return shape


def _run(twin: Twin, data: bytes) -> object:
    try:
        fields, offset = twin.parse_header_block(data)
    except Exception as exc:
        return ("raised", type(exc).__name__)
    check(0 <= offset <= len(data), f"{twin.name}: body offset {offset} outside the message")
    for name, _value in fields:
        check(
            bool(name) and not any(c in name for c in b":\r\n"),
            f"{twin.name}: bad field name {name!r}",
        )
    _shape(fields, offset, len(data))
    return (fields, offset)


def test_one_input(data: bytes) -> None:
    """Parse ``data`` with every twin; raise on any disagreement."""
    if not _TWINS:
        _TWINS.extend(twins())
    reference = _run(_TWINS[0], data)
    check(
        not (isinstance(reference, tuple) and reference[0] == "raised"),
        f"parse_header_block raised {reference!r}; it never raises",
    )
    for twin in _TWINS[1:]:
        got = _run(twin, data)
        check(
            got == reference,
            f"{twin.name} differs from {_TWINS[0].name}:\n  {reference!r}\n  {got!r}",
        )


TARGET = Target(
    name="headers_diff",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.1, per_byte_s=20e-6),
    max_len=65536,
)

if __name__ == "__main__":
    main(TARGET)
