"""RFC 2047 encoded-word decoding with Go ``mime.WordDecoder.DecodeHeader`` semantics.

The rules, which the Go package's 42 decoding vectors pin down:

* An encoded word is ``=?charset?E?text?=`` with ``E`` one of ``B``/``b`` (base64, padded,
  RFC 4648 alphabet) or ``Q``/``q`` (RFC 2047 4.2: ``_`` is a space, ``=XX`` a byte with hex
  digits of either case, other printable ASCII, TAB, CR and LF stand for themselves).
* The encoded text ends at the first ``?``, which must start the closing ``?=``, and holds no
  white space (RFC 2047 2: ``=?us-ascii?q?foo bar?=`` is not an encoded word; Go decoded it,
  and none of its vectors needs that).
* A word that does not decode (bad encoding letter, bad base64, bad ``=XX``) or is not a word
  is kept as text and the scan goes on two characters later. The scan is one linear pass.
* Linear white space (SP, HTAB, CR, LF) *between two decoded words* is dropped (RFC 2047 6.2);
  any other text around words is kept.
* ``utf-8`` and unknown charsets decode as UTF-8 with U+FFFD for bad bytes (Go passes the raw
  bytes through, which can leave invalid UTF-8 in a Go string; a Python ``str`` cannot hold
  that). ``us-ascii`` maps bytes >= 0x80 to U+FFFD, ``iso-8859-1`` maps bytes to code points,
  the rest go through :mod:`smtpx._charsets`. An RFC 2231 language suffix (``utf-8*en``,
  RFC 2231 5) is ignored; Go does not know it and would treat the charset as unknown.

Address headers use :func:`decode_quote_escape` instead (Go's quote-escape mode, reference 4.3).
"""

from __future__ import annotations

import binascii
import re

from ._charsets import decode_text, lookup_codec

__all__ = ["QUOTE_SPECIALS", "decode_header", "decode_quote_escape"]

# RFC 4648 4 without line breaks: exactly what Go's base64.StdEncoding accepts in a word.
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_Q_OK = re.compile(r"[ -~\t\r\n]*")
_HEX = "0123456789ABCDEFabcdef"
_LWSP = " \t\r\n"
# An encoded word (RFC 2047 2): the charset holds no "?" (Go's rule, so "utf-8*en" passes), the
# encoded text no "?" and no white space. A failed try at one "=?" stops at the third "?" after
# it, so a scan that steps from "=?" to "=?" reads each character a bounded number of times.
_WORD = re.compile(r"=\?([^?]*)\?([BbQq])\?([^? \t\r\n]*)\?=")
# The characters that make Go's quote-escape mode wrap a decoded word in double quotes.
QUOTE_SPECIALS = frozenset("\"#$%&'(),.:;<>@[]^`{|}~")


def _q_decode(text: str) -> bytes | None:
    # RFC 2047 4.2; Go's qDecode: anything outside printable ASCII/TAB/CR/LF is an error.
    if _Q_OK.fullmatch(text) is None:
        return None
    if "=" not in text:
        return text.replace("_", " ").encode("ascii")
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "=":
            if i + 2 >= n:  # Go: "=X" or "=" at the end is an error
                return None
            h1, h2 = text[i + 1], text[i + 2]
            if h1 not in _HEX or h2 not in _HEX:
                return None
            out.append(int(h1 + h2, 16))
            i += 3
            continue
        out.append(32 if c == "_" else ord(c))
        i += 1
    return bytes(out)


def _decode_word(enc: str, text: str) -> bytes | None:
    if enc in "Bb":
        if _B64.fullmatch(text) is None:
            return None
        return binascii.a2b_base64(text)
    if enc in "Qq":
        return _q_decode(text)
    return None


def _convert(charset: str, content: bytes) -> str:
    star = charset.find("*")
    if star >= 0:
        charset = charset[:star]  # RFC 2231 5: charset*language
    label = charset.lower()
    if label == "utf-8":
        return content.decode("utf-8", "replace")
    if label == "iso-8859-1":
        return content.decode("latin-1")
    if label == "us-ascii":
        return content.decode("ascii", "replace")
    codec = lookup_codec(label)
    if codec is None:
        return content.decode("utf-8", "replace")
    return decode_text(content, codec)


def decode_header(value: str) -> str:
    """Decode every RFC 2047 encoded word in ``value`` (Go ``DecodeHeader`` rules).

    One pass over ``value``: the scan keeps indices and never copies the rest of the string,
    so the cost is linear in its length (a run of ``=?`` included). Following RFC 2047 2, the
    encoded text of a word ends at the first ``?`` and holds no white space: ``=?us-ascii?q?a
    b?=`` is not an encoded word and stays as it is (Go decoded it).

    Args:
        value: An unfolded header value.

    Returns:
        The decoded text; ``value`` itself when it holds no ``=?``.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pos = 0  # start of the text not yet copied to ``out``
    scan = 0  # where to look for the next word
    between_words = False
    while True:
        m = _WORD.search(value, scan)
        if m is None:
            break
        start = m.start()
        content = _decode_word(m.group(2), m.group(3))
        if content is None:
            # A word that does not decode stays text; the scan goes on 2 characters later.
            between_words = False
            scan = start + 2
            continue
        # RFC 2047 6.2: white space between two adjacent encoded words is dropped.
        if start > pos and (not between_words or value[pos:start].strip(_LWSP)):
            out.append(value[pos:start])
        out.append(_convert(m.group(1), content))
        pos = scan = m.end()
        between_words = True
    out.append(value[pos:])
    return "".join(out)


def decode_quote_escape(value: str) -> str:
    r"""Decode an address header the Go way: word by word, quoting what needs quoting.

    The value is split on single spaces and each piece is decoded on its own (so the space
    between two adjacent encoded words survives). A piece that changed has every ``"`` escaped
    as ``\"`` and, if it then contains one of :data:`QUOTE_SPECIALS`, is wrapped in double
    quotes, so ``=?UTF-8?Q?Doe=2C_J?= <j@x.y>`` becomes ``"Doe, J" <j@x.y>``, one mailbox.
    """
    if "=?" not in value:
        return value
    words = value.split(" ")
    for k, word in enumerate(words):
        if "=?" not in word:
            continue
        dec = decode_header(word)
        if dec == word:
            continue
        dec = dec.replace('"', '\\"')
        if not QUOTE_SPECIALS.isdisjoint(dec):
            dec = f'"{dec}"'
        words[k] = dec
    return " ".join(words)
