r"""Header block parser, pure-Python twin (the spec); compiled twin: ``_speedups/_headers.pyx``.

``parse_header_block(data)`` never raises and never decodes: it returns the header fields as
raw ``(name, value)`` byte pairs, in order, plus the offset where the body starts. The rules,
which both twins follow byte for byte:

1. **Split.** A line ends with LF, optionally preceded by CR (CRLF). The header block ends at
   the *first* empty line, whichever ending it or the line before it uses (``\r\n\r\n``,
   ``\n\n``, ``\r\n\n``, ``\n\r\n``; an empty first line means no headers). The body
   offset is the index just after that empty line's ending. Without an empty line the whole
   input is headers and the offset is ``len(data)`` (RFC 5322 3.5: the body is optional).
   A bare CR is not a line ending; it stays data.
2. **Fields.** A line that starts with a field name, optional SP/HTAB and a colon opens a field
   (RFC 5322 2.2, 3.6.8). A name is one or more bytes ``0x21-0x39 / 0x3B-0x7E``; white space
   before the colon is accepted and dropped (RFC 5322 4.5.8 obs-optional: ``Subject : x``).
3. **Continuations.** A line starting with SP or HTAB continues the field before it. Unfolding
   follows RFC 5322 2.2.3: only the line break (CRLF or LF) is removed, the white space after
   it stays. So ``a\r\n  b`` becomes ``a  b`` (the Go package collapses it to ``a b``).
4. **Value.** The unfolded text after the colon with SP, HTAB and CR stripped at both ends.
   Every other byte is kept as is: 8-bit bytes, NUL, bare CR inside the value.
5. **Malformed lines** are dropped, together with the continuation lines that follow them:
   a line that is not a field (no colon, an empty name, a name byte outside the range above,
   e.g. ``From foo@bar`` or a stray body line) and continuation lines with no field before
   them (a first line starting with white space). The raw block keeps them; the server never
   rejects mail for them (Go returns the fields so far plus an error instead).
"""

from __future__ import annotations

import re

__all__ = ["parse_header_block"]

# A field: name, optional WSP, colon, the rest of its first line, then every continuation
# line. MULTILINE ``^`` only matches at line starts, so a malformed line and its continuations
# are skipped by the scan (rule 5).
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:([^\n]*)((?:\n[ \t][^\n]*)*)", re.MULTILINE)
_WS = b" \t\r"


def parse_header_block(data: bytes) -> tuple[list[tuple[bytes, bytes]], int]:
    """Split a message into its header fields and the offset of its body.

    Args:
        data: The whole message (or at least its header block and the empty line after it).

    Returns:
        ``(fields, body_offset)``: the raw ``(name, value)`` pairs in order (see the module
        docstring for the exact rules) and the index of the body's first byte in ``data``.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"parse_header_block() needs bytes, not {type(data).__name__}")
    if data[:1] == b"\n":
        return [], 1
    if data[:2] == b"\r\n":
        return [], 2
    # The earliest empty line; "\n\r\n" covers CRLF CRLF, "\n\n" covers LF LF and CRLF LF.
    crlf = data.find(b"\n\r\n")
    lf = data.find(b"\n\n", 0, len(data) if crlf < 0 else crlf + 2)
    if lf >= 0:
        end, body = lf + 1, lf + 2
    elif crlf >= 0:
        end, body = crlf + 1, crlf + 3
    else:
        end = body = len(data)
    # Rule 3: every LF in a continuation starts a fold; drop it and one CR before it.
    # (Two replace() calls beat one re.sub() by far on short values.)
    fields = [
        (
            name,
            (first + more).replace(b"\r\n", b"").replace(b"\n", b"").strip(_WS)
            if more
            else first.strip(_WS),
        )
        for name, first, more in _FIELD.findall(data, 0, end)
    ]
    return fields, body
