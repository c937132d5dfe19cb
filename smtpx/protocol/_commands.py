"""Command grammar: paths, domains and ESMTP parameters (RFC 5321 4.1.2, 1870, 6152, 6531).

Pure functions from text to values. A malformed argument raises ``CommandSyntaxError`` whose
``response`` is the reply to send; the connection turns it into that reply.
"""

from __future__ import annotations

import ipaddress
import re

from smtpx.address import Address
from smtpx.responses import (
    FAIL_INVALID_ADDRESS,
    FAIL_SYNTAX_ERROR,
    FAIL_UTF8_NOT_ENABLED,
    Response,
)

__all__ = [
    "CommandSyntaxError",
    "parse_domain_arg",
    "parse_params",
    "parse_path",
    "split_path_and_params",
    "xtext_decode",
]


class CommandSyntaxError(Exception):
    """An argument does not follow the grammar; ``response`` is the reply to send."""

    def __init__(self, response: Response) -> None:
        super().__init__(str(response))
        self.response = response


# RFC 5321 4.1.2 atext (RFC 5322 3.2.3); RFC 6531 3.3 adds every non-ASCII character.
_ATEXT = r"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*\Z")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}\u0080-\U0010ffff]+(?:\.[{_ATEXT}\u0080-\U0010ffff]+)*\Z")
# qtextSMTP = %d32-33 / %d35-91 / %d93-126, quoted-pairSMTP = "\" %d32-126
_QUOTED = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"\Z')
_QUOTED_UTF8 = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z')
# sub-domain = Let-dig [Ldh-str]; underscores are tolerated because real HELO names use them.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_U = "\u0080-\U0010ffff"
_LABEL_UTF8 = rf"[A-Za-z0-9_{_U}](?:[A-Za-z0-9_\-{_U}]*[A-Za-z0-9_{_U}])?"
_DOMAIN_UTF8 = re.compile(rf"{_LABEL_UTF8}(?:\.{_LABEL_UTF8})*\.?\Z")
# <Dot-string@Domain>, the shape of nearly every real path: one regex decides it.
_PLAIN_PATH = re.compile(rf"<([{_ATEXT}]+(?:\.[{_ATEXT}]+)*@{_LABEL}(?:\.{_LABEL})*)>\Z")
# A-d-l (source route), which servers MUST accept and ignore (RFC 5321 4.1.1.3, C).
_SOURCE_ROUTE = re.compile(r"@[^,:]+(?:,@[^,:]+)*:")
# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"); esmtp-value = 1*(%d33-60 / %d62-126)
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*\Z")
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+\Z")

MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2
MAX_PATH = 256  # RFC 5321 4.5.3.1.3


def is_address_literal(text: str) -> bool:
    """True for ``[IPv4]``, ``[IPv6:...]`` or a general ``[tag:value]`` literal (RFC 5321 4.1.3)."""
    if len(text) < 3 or text[0] != "[" or text[-1] != "]":
        return False
    inner = text[1:-1]
    if inner[:5].upper() == "IPV6:":
        if "%" in inner:
            # ipaddress accepts a zone id ("fe80::1%eth0") holding any character, CR and LF
            # included; RFC 5321 4.1.3's IPv6-addr has none, and it would forge Received lines.
            return False
        try:
            ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return False
        return True
    if ":" in inner:
        tag, _, value = inner.partition(":")
        return bool(_DOMAIN.match(tag)) and bool(re.fullmatch(r"[\x21-\x5a\x5e-\x7e]+", value))
    try:
        ipaddress.IPv4Address(inner)
    except ValueError:
        return False
    return True


def is_domain(text: str, utf8: bool = False) -> bool:
    """True for a syntactically valid domain (U-labels only when ``utf8``)."""
    if not text or len(text) > MAX_DOMAIN:
        return False
    if utf8 and not text.isascii() and not text.isprintable():
        # The U-label ranges below hold C1 controls (U+0085), line and paragraph separators
        # (U+2028) and bidi overrides (U+202E): none belongs in a name, all reach headers.
        return False
    return bool((_DOMAIN_UTF8 if utf8 else _DOMAIN).match(text))


def parse_domain_arg(arg: str, *, utf8: bool = True) -> str:
    """Validate the HELO/EHLO argument: one domain or address literal (RFC 5321 4.1.1.1).

    Args:
        arg: The text after the verb; surrounding spaces are tolerated.
        utf8: Accept U-labels (EHLO, where SMTPUTF8 is offered). HELO negotiates no
            extension, so its name must be ASCII.

    Returns:
        The name. Control characters, other whitespace and, without ``utf8``, any non-ASCII
        character are refused: the name is copied into Received header fields and logs.
    """
    arg = arg.strip(" ")
    if not arg or not arg.isprintable() or " " in arg or (not utf8 and not arg.isascii()):
        raise CommandSyntaxError(FAIL_SYNTAX_ERROR)
    if is_address_literal(arg) or is_domain(arg, utf8=utf8):
        return arg
    raise CommandSyntaxError(FAIL_SYNTAX_ERROR)


def split_path_and_params(arg: str, prefix: str) -> tuple[str, str]:
    """Split ``FROM:<path> params`` into the path text and the parameter text.

    Args:
        arg: The command argument after the verb, e.g. ``"FROM:<a@b> SIZE=10"``.
        prefix: ``"FROM:"`` or ``"TO:"`` (matched case-insensitively).
    """
    if arg[: len(prefix)].upper() != prefix:
        raise CommandSyntaxError(FAIL_SYNTAX_ERROR)
    rest = arg[len(prefix) :].lstrip(" ")  # "MAIL FROM: <a@b>" is common; tolerate it
    if rest.startswith("<") and '"' not in rest:
        end = rest.find(">")  # no quoted local part: the first ">" closes the path
        if end < 0:
            raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
        return rest[: end + 1], rest[end + 1 :]
    if rest.startswith("<"):
        # The path ends at the first ">" outside a quoted local part.
        in_quote = escaped = False
        for i, ch in enumerate(rest):
            if escaped:
                escaped = False
            elif ch == "\\" and in_quote:
                escaped = True
            elif ch == '"':
                in_quote = not in_quote
            elif ch == ">" and not in_quote:
                return rest[: i + 1], rest[i + 1 :]
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    # A path without angle brackets is not RFC 5321, but widely sent; accept one bare token.
    path, _, params = rest.partition(" ")
    return path, params


def parse_path(path: str, *, utf8: bool, allow_null: bool, allow_postmaster: bool) -> Address:
    """Parse a reverse-path or forward-path.

    Args:
        path: ``<local@domain>``, ``<>``, ``<postmaster>`` or a bare ``local@domain``.
        utf8: The transaction carries SMTPUTF8 (RFC 6531), so non-ASCII is allowed.
        allow_null: Accept ``<>`` (MAIL only).
        allow_postmaster: Accept ``<postmaster>`` without a domain (RCPT only, RFC 5321 4.5.1).

    Returns:
        The address; ``Address("")`` for the null path.
    """
    plain = _PLAIN_PATH.match(path)
    if plain is not None and len(path) <= MAX_PATH + 2:
        return Address(plain.group(1))  # the common case, checked by one regex
    inner = path[1:-1] if path.startswith("<") and path.endswith(">") else path
    if not inner:
        if allow_null and path == "<>":
            return Address("")
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    if inner.startswith("@"):
        m = _SOURCE_ROUTE.match(inner)
        if m is None:
            raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
        inner = inner[m.end() :]
    if allow_postmaster and inner.lower() == "postmaster":
        return Address(inner)
    if len(inner) > MAX_PATH:
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    at = inner.rfind("@")
    if at <= 0:
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    local, domain = inner[:at], inner[at + 1 :]
    if not inner.isascii():
        if not utf8:
            raise CommandSyntaxError(FAIL_UTF8_NOT_ENABLED)
        if not inner.isprintable():  # C1 controls, U+2028, bidi overrides (see is_domain)
            raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    if local.startswith('"'):
        ok = (_QUOTED_UTF8 if utf8 else _QUOTED).match(local) is not None
    else:
        ok = (_DOT_STRING_UTF8 if utf8 else _DOT_STRING).match(local) is not None
    if not ok:
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    if not (is_address_literal(domain) or is_domain(domain, utf8=utf8)):
        raise CommandSyntaxError(FAIL_INVALID_ADDRESS)
    return Address(inner)


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``KEYWORD[=value]`` parameters (RFC 5321 4.1.2 Mail-parameters).

    Keywords are returned uppercased; a repeated keyword is a syntax error.
    """
    params: dict[str, str | None] = {}
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not _KEYWORD.match(key) or (eq and not _VALUE.match(value)):
            raise CommandSyntaxError(FAIL_SYNTAX_ERROR)
        key = key.upper()
        if key in params:
            raise CommandSyntaxError(FAIL_SYNTAX_ERROR)
        params[key] = value if eq else None
    return params


def xtext_decode(text: str) -> str:
    """Decode RFC 3461 4 xtext (``+XX`` hex escapes), as XCLIENT values use."""
    if "+" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "+":
            hexpart = text[i + 1 : i + 3]
            if len(hexpart) != 2 or not all(c in "0123456789ABCDEFabcdef" for c in hexpart):
                raise CommandSyntaxError(FAIL_SYNTAX_ERROR)
            out.append(chr(int(hexpart, 16)))
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)
