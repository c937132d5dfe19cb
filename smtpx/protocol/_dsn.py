"""DSN parameter grammar (RFC 3461 4, RFC 6533 3) for the MAIL and RCPT commands.

Strict on purpose: xtext only (a raw ``=`` or a lower-case ``+xx`` is not xtext), no control
characters even when escaped (``ENVID=a+0D+0Ab`` would carry a line break into a DSN or a log),
ENVID at most 100 characters, NOTIFY items non-empty and not repeated. Every violation is
``501 5.5.4``.
"""

from __future__ import annotations

import re
from typing import cast

from smtpx._xtext import decode_xtext
from smtpx.dsn import NotifyKeyword, OriginalRecipient, ReturnContent
from smtpx.responses import Response

from ._commands import CommandSyntaxError

__all__ = ["FAIL_DSN_PARAMETER", "parse_envid", "parse_notify", "parse_orcpt", "parse_ret"]

FAIL_DSN_PARAMETER = Response(501, "5.5.4", "Invalid DSN parameter")

ENVID_MAX_LENGTH = 100  # RFC 3461 4.4: the ENVID value, as sent, at most 100 characters
ORCPT_MAX_LENGTH = 500  # RFC 3461 4.2 / 6533: the encoded address, after "addr-type;"
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})
# RFC 6533 3: EmbeddedUnicodeChar = "\x{" HEXPOINT "}", HEXPOINT two to six hex digits
# without a leading zero beyond the first two (so each code point has one spelling).
_EMBEDDED = re.compile(r"\\x\{(?:[0-9A-F]{2}|[1-9A-F][0-9A-F]{2,5})\}")
# QUCHAR: printable ASCII but "+", "=", "\" and space, or any non-ASCII character.
_QUCHARS = re.compile(r"[\x21-\x2a\x2c-\x3c\x3e-\x5b\x5d-\x7e\u0080-\U0010ffff]+")


def _bad() -> CommandSyntaxError:
    return CommandSyntaxError(FAIL_DSN_PARAMETER)


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def parse_ret(value: str | None) -> ReturnContent:
    """``RET=FULL`` or ``RET=HDRS`` (RFC 3461 4.3), case-insensitive."""
    upper = (value or "").upper()
    if upper == "FULL" or upper == "HDRS":
        return cast(ReturnContent, upper)
    raise _bad()


def parse_envid(value: str | None) -> str:
    """``ENVID=xtext`` (RFC 3461 4.4): at most 100 characters, printable ASCII once decoded."""
    if not value or len(value) > ENVID_MAX_LENGTH:
        raise _bad()
    try:
        decoded = decode_xtext(value, strict=True)
    except ValueError:
        raise _bad() from None
    if not _printable_ascii(decoded):
        raise _bad()
    return decoded


def parse_notify(value: str | None) -> tuple[NotifyKeyword, ...]:
    """``NOTIFY=NEVER`` or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1)."""
    if not value:
        raise _bad()
    items = value.upper().split(",")
    if items == ["NEVER"]:
        return ("NEVER",)
    if any(item not in _NOTIFY for item in items) or len(set(items)) != len(items):
        raise _bad()  # NEVER with others, an unknown or empty item, or a repeated one
    return tuple(cast(NotifyKeyword, item) for item in items)


def _decode_unitext(text: str) -> str:
    """RFC 6533 3 utf-8-addr-unitext: QUCHARs and backslash-x-brace escapes."""
    out: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        run = _QUCHARS.match(text, pos)
        if run is not None:
            out.append(run.group())
            pos = run.end()
            continue
        esc = _EMBEDDED.match(text, pos)
        if esc is None:
            raise _bad()
        point = int(esc.group()[3:-1], 16)
        if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
            raise _bad()
        out.append(chr(point))
        pos = esc.end()
    return "".join(out)


def parse_orcpt(value: str | None, *, utf8: bool) -> OriginalRecipient:
    """``ORCPT=addr-type;xtext`` (RFC 3461 4.2): ``rfc822``, or ``utf-8`` with SMTPUTF8.

    Args:
        value: The parameter value.
        utf8: The transaction uses SMTPUTF8, so the ``utf-8`` type (RFC 6533) is allowed,
            written as utf-8-addr-unitext.
    """
    addr_type, semi, encoded = (value or "").partition(";")
    if not semi or not encoded or len(encoded) > ORCPT_MAX_LENGTH:
        raise _bad()
    kind = addr_type.lower()
    if kind == "rfc822":
        try:
            address = decode_xtext(encoded, strict=True)
        except ValueError:
            raise _bad() from None
        if not _printable_ascii(address):
            raise _bad()
        return OriginalRecipient("rfc822", address)
    if kind == "utf-8" and utf8:
        address = _decode_unitext(encoded)
        if not address.isprintable():  # controls, U+2028, bidi overrides: never in a DSN
            raise _bad()
        return OriginalRecipient("utf-8", address)
    raise _bad()
