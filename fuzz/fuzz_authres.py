"""Fuzz target: ``smtpx.authres.parse`` and ``format`` round trips (RFC 8601).

Input: an Authentication-Results field body (UTF-8, invalid bytes replaced). ``parse`` may
only raise ``AuthResultsParseError``. Whatever it accepts must survive ``format`` (issue 9
item 20: ``parse(format(parse(x)))`` must be total), the formatted field must not be able to
inject a header line, and ``format`` then ``parse`` must reach a fixed point: formatting the
result of parsing a formatted field gives the same text again.

Run: ``python -m fuzz.fuzz_authres`` (see fuzz/README.md).
"""

from __future__ import annotations

import re

from fuzz._harness import Budget, Finding, Target, check, main
from smtpx import authres

__all__ = ["TARGET", "encode", "test_one_input"]

# format() folds with CRLF and two spaces; any other CR or LF would start a new header line.
_BREAK_NOT_FOLD = re.compile(r"\r(?!\n  )|(?<!\r)\n")


def encode(value: str) -> bytes:
    """A seed input: the field body."""
    return value.encode("utf-8")


def _format(authserv_id: str, results: list[authres.Result], what: str) -> str:
    try:
        text = authres.format(authserv_id, results)
    except ValueError as exc:
        raise Finding(f"format() refuses what parse() accepted ({what}): {exc}", 20) from exc
    check(_BREAK_NOT_FOLD.search(text) is None, f"format() output breaks the header: {text!r}")
    return text


def test_one_input(data: bytes) -> None:
    """Parse, format, parse again, format again; raise on any broken invariant."""
    value = data.decode("utf-8", "replace")
    try:
        authserv_id, results = authres.parse(value)
    except authres.AuthResultsParseError:
        return
    first = _format(authserv_id, results, "the input")
    try:
        again_id, again = authres.parse(first)
    except authres.AuthResultsParseError as exc:
        # Item 20 asks for parse(format(parse(x))) to be total; an empty value is one way in.
        raise Finding(f"parse() refuses format()'s output {first!r}: {exc}", 20) from exc
    second = _format(again_id, again, "formatted once")
    check(second == first, f"format/parse is not stable:\n  {first!r}\n  {second!r}")


TARGET = Target(
    name="authres",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.05, per_byte_s=20e-6),
    scale_bytes=8192,
    max_len=8192,
)

if __name__ == "__main__":
    main(TARGET)
