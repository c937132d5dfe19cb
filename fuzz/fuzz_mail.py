"""Fuzz target: ``smtpx.mail.Mail``: ``headers()``, ``body()`` and the MIME tree.

Input: a message, then one flags byte read from the end (SMTPUTF8, quote options). Every
accessor a handler would call runs on it: literal and decoded headers, the address fields, and
``body()`` with every part's type, parameters, payload, text and file name. Only
``MailParseError`` (the documented error) may be raised; no RecursionError, and the tree must
stay within the documented 64 levels and one part per input byte. The time and memory budgets
catch the super-linear cases (issue 9 items 4, 7 and 8).

Run: ``python -m fuzz.fuzz_mail`` (see fuzz/README.md).
"""

from __future__ import annotations

import contextlib

# Imported up front so that no lazy import lands inside one input's memory budget.
import email.message
import email.utils  # noqa: F401 (pre-import, see above)

import atheris

from fuzz._harness import Budget, Target, check, main
from smtpx.errors import MailParseError
from smtpx.mail import Content, Mail

__all__ = ["TARGET", "classify", "encode", "test_one_input"]

_MAX_DEPTH = 64  # Mail.body(): "nesting exceeds 64 levels" raises MailParseError


def encode(message: bytes, flags: int = 0) -> bytes:
    """A seed input: ``flags & 1`` SMTPUTF8, ``& 2`` quote_none, ``& 4`` decode addresses."""
    return message + bytes([flags])


def _content(part: Content) -> None:
    part.content_type()
    part.charset()
    part.encoding()
    part.disposition()
    part.param("boundary")
    part.param("filename", "Content-Disposition")
    part.is_attachment()
    part.is_inline()
    part.is_form()
    for accessor in (part.payload, part.decode, part.text, part.filename, part.name):
        with contextlib.suppress(MailParseError):
            accessor()


def _body(mail: Mail, size: int) -> None:
    try:
        root = mail.body()
    except MailParseError:
        return
    for parts, (part, depth) in enumerate(root.walk(), 1):
        check(depth <= _MAX_DEPTH, f"MIME part at depth {depth}")
        check(parts <= size + 1, f"{parts} MIME parts from {size} bytes")
        _content(part)


def test_one_input(data: bytes) -> None:
    """Parse ``data`` as a message and use every accessor; raise on any broken invariant."""
    fdp = atheris.FuzzedDataProvider(data)
    flags = fdp.ConsumeIntInRange(0, 255)
    message = fdp.ConsumeBytes(fdp.remaining_bytes())
    mail = Mail(message, utf8=bool(flags & 1))
    check(message.startswith(mail.raw_headers), "raw_headers is not a prefix of the message")
    literal = mail.headers_literal()
    decoded = mail.headers(quote_escape=["X-Fuzz"], quote_none=bool(flags & 2))
    check(len(literal.keys()) == len(decoded.keys()), "decoding changed the number of fields")
    mail.get("Subject")
    mail.get_all("Received")
    if flags & 4:
        for accessor in (mail.from_, mail.to):
            with contextlib.suppress(MailParseError):
                accessor()
    _body(mail, len(message))


def classify(exc: BaseException) -> int | None:
    """Known exceptions: a charset label reaching ``codecs.lookup`` (item 9), else item 0."""
    if isinstance(exc, UnicodeError):
        return 0  # the stdlib's MIME parameter code on mixed 8-bit and non-ASCII text
    if isinstance(exc, ValueError) and "null character" in str(exc):
        return 9
    return None


TARGET = Target(
    name="mail",
    test_one_input=test_one_input,
    budget=Budget(base_s=0.25, per_byte_s=40e-6, base_bytes=8 << 20, per_byte_bytes=64),
    trailer=1,
    scale_bytes=16384,
    max_len=65536,
    classify=classify,
)

if __name__ == "__main__":
    main(TARGET)
