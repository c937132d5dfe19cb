"""RFC 5322 3.4 address lists (with RFC 6532 UTF-8) parsed into :class:`smtpx.address.Address`.

What Go's ``net/mail`` accepts, this accepts: ``Name <a@b>``, ``"Quoted, Name" <a@b>``,
``a@b``, ``a@b (Comment Name)`` (the comment becomes the name, as in Go), groups
(``undisclosed-recipients:;``; their members are flattened into the list), obsolete phrases
with dots (``John Q. Public <a@b>``, RFC 5322 4.1), empty list elements (``a@b, , c@d``,
RFC 5322 4.4) and domain literals. Encoded words in an unquoted display name are decoded
(RFC 2047 5, rule 3), adjacent ones without the space between them.
"""

from __future__ import annotations

import re

from ._mime_words import decode_header
from .address import Address
from .errors import MailParseError

__all__ = ["parse_address", "parse_address_list"]

_SPECIALS = '()<>[]:;@\\,."'
_DOT_ATOM = re.compile(r"[^\s()<>\[\]:;@\\,.\"]+(?:\.[^\s()<>\[\]:;@\\,.\"]+)*")
# token kinds
_ATOM, _QS, _LIT, _COMMENT, _SPECIAL = range(5)
_Token = tuple[int, str]


def _tokenize(s: str) -> list[_Token]:
    toks: list[_Token] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            buf = []
            i += 1
            while True:
                if i >= n:
                    raise MailParseError(f"mail: unclosed quoted-string in {s!r}")
                c = s[i]
                if c == "\\" and i + 1 < n:
                    buf.append(s[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            toks.append((_QS, "".join(buf)))
        elif c == "(":
            depth = 0
            buf = []
            while True:
                if i >= n:
                    raise MailParseError(f"mail: unclosed comment in {s!r}")
                c = s[i]
                if c == "\\" and i + 1 < n:
                    buf.append(s[i + 1])
                    i += 2
                    continue
                i += 1
                if c == "(":
                    depth += 1
                    if depth == 1:
                        continue
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                buf.append(c)
            toks.append((_COMMENT, "".join(buf)))
        elif c == "[":
            end = s.find("]", i)
            if end < 0:
                raise MailParseError(f"mail: unclosed domain literal in {s!r}")
            toks.append((_LIT, s[i : end + 1]))
            i = end + 1
        elif c in _SPECIALS:
            toks.append((_SPECIAL, c))
            i += 1
        else:
            j = i + 1
            while j < n and s[j] not in _SPECIALS and s[j] not in " \t\r\n":
                j += 1
            toks.append((_ATOM, s[i:j]))
            i = j
    return toks


class _Parser:
    __slots__ = ("pos", "src", "toks")

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokenize(src)
        self.pos = 0

    def _fail(self, why: str) -> MailParseError:
        return MailParseError(f"mail: {why} in {self.src!r}")

    def peek(self) -> _Token | None:
        # Comments are white space everywhere except right after a bare addr-spec.
        while self.pos < len(self.toks) and self.toks[self.pos][0] == _COMMENT:
            self.pos += 1
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take_special(self, ch: str) -> bool:
        tok = self.peek()
        if tok is not None and tok == (_SPECIAL, ch):
            self.pos += 1
            return True
        return False

    def phrase(self) -> list[_Token]:
        words: list[_Token] = []
        while True:
            tok = self.peek()
            if tok is None or not (tok[0] in (_ATOM, _QS) or tok == (_SPECIAL, ".")):
                return words
            words.append(tok)
            self.pos += 1

    def address(self, out: list[Address], allow_group: bool) -> None:
        words = self.phrase()
        tok = self.peek()
        if tok == (_SPECIAL, "<"):
            self.pos += 1
            out.append(Address(self.addr_spec(), _display_name(words)))
            if not self.take_special(">"):
                raise self._fail("missing '>'")
        elif tok == (_SPECIAL, "@"):
            local = _local_part(words, self)
            self.pos += 1
            spec = f"{local}@{self.domain()}"
            name = ""
            # Go net/mail: a comment after a bare addr-spec is its display name.
            end = self.pos
            self.peek()  # steps over the comments that follow
            if end < self.pos:
                name = decode_header(self.toks[end][1].strip())
            out.append(Address(spec, name))
        elif tok == (_SPECIAL, ":") and words:
            if not allow_group:
                raise self._fail("unexpected group")
            self.pos += 1
            while not self.take_special(";"):
                if self.peek() is None:
                    raise self._fail("missing ';' after group")
                if self.take_special(","):
                    continue
                self.address(out, allow_group=False)
                if self.peek() != (_SPECIAL, ";") and not self.take_special(","):
                    raise self._fail("expected ',' or ';' in group")
        elif not words:
            raise self._fail("no address")
        else:
            raise self._fail("missing '@' or angle-addr")

    def addr_spec(self) -> str:
        words = self.phrase()
        if not self.take_special("@"):
            raise self._fail("missing '@'")
        return f"{_local_part(words, self)}@{self.domain()}"

    def domain(self) -> str:
        tok = self.peek()
        if tok is not None and tok[0] == _LIT:
            self.pos += 1
            return tok[1]
        parts: list[str] = []
        while True:
            tok = self.peek()
            if tok is None or tok[0] != _ATOM:
                raise self._fail("bad domain")
            parts.append(tok[1])
            self.pos += 1
            # Look at the very next token: a comment right after the domain may be a name.
            nxt = self.toks[self.pos] if self.pos < len(self.toks) else None
            if nxt != (_SPECIAL, "."):
                return ".".join(parts)
            self.pos += 1


def _local_part(words: list[_Token], p: _Parser) -> str:
    if not words:
        raise p._fail("empty local part")
    out: list[str] = []
    for kind, text in words:
        if kind == _QS and _DOT_ATOM.fullmatch(text) is None:
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'"{quoted}"')
        else:
            out.append(text)
    return "".join(out)


def _display_name(words: list[_Token]) -> str:
    # Each name word is a list of pieces joined at the end: growing one string piece by piece
    # would copy it every time (quadratic in a run of "." or of adjacent encoded words).
    parts: list[list[str]] = []
    prev_encoded = False
    for kind, text in words:
        if kind == _SPECIAL:  # obs-phrase "." sticks to the word before it
            if parts:
                parts[-1].append(text)
            else:
                parts.append([text])
            prev_encoded = False
            continue
        if kind == _ATOM and text.startswith("=?") and text.endswith("?="):
            dec = decode_header(text)
            if dec != text:
                # RFC 2047 6.2: no space between adjacent encoded words.
                if prev_encoded:
                    parts[-1].append(dec)
                else:
                    parts.append([dec])
                prev_encoded = True
                continue
        parts.append([text])
        prev_encoded = False
    return " ".join("".join(part) for part in parts)


def parse_address_list(value: str) -> list[Address]:
    """Parse an RFC 5322 address list; group members are flattened into the result.

    Raises:
        MailParseError: The value is not an address list.
    """
    p = _Parser(value)
    out: list[Address] = []
    while p.peek() is not None:
        if p.take_special(","):
            continue  # RFC 5322 4.4 obs-addr-list: empty elements
        p.address(out, allow_group=True)
        if p.peek() is not None and not p.take_special(","):
            raise p._fail("expected ','")
    return out


def parse_address(value: str) -> Address:
    """Parse exactly one mailbox (no group, no list).

    Raises:
        MailParseError: The value is not exactly one mailbox.
    """
    p = _Parser(value)
    out: list[Address] = []
    if p.peek() is None:
        raise MailParseError("mail: no address")
    p.address(out, allow_group=False)
    if p.peek() is not None or len(out) != 1:
        raise p._fail("expected a single address")
    return out[0]
