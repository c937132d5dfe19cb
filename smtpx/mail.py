"""Mail: a received message opened up: header fields, RFC 2047 decoding, and the MIME tree.

``Mail(data)`` splits the message at its first empty line (see
:func:`smtpx._headers_py.parse_header_block`, or its compiled twin when built). From there:

* :meth:`Mail.headers_literal` gives the fields as sent: values decoded from UTF-8 with
  ``surrogateescape``, so 8-bit bytes survive (``value.encode("utf-8", "surrogateescape")``
  gives the original bytes back) and nothing else changes.
* :meth:`Mail.headers` decodes RFC 2047 encoded words the way Go ``mime.WordDecoder`` does,
  with the Go package's quote-escape rule for address fields. Its values are always valid
  text: bad bytes become U+FFFD.
* :meth:`Mail.body` builds the MIME tree (:class:`Content`): multipart bodies are split on
  their boundary (RFC 2046 5.1.1), parts keep their raw bytes and their transfer encoding,
  and a missing Content-Type means ``text/plain`` (RFC 2045 5.2).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, unquote_to_bytes

from ._charsets import decode_text, lookup_codec
from ._impl import parse_header_block
from ._mime_words import decode_header, decode_quote_escape
from .address import Address
from .errors import MailParseError
from .headers import Headers

__all__ = [
    "MAX_BOUNDARY",
    "MAX_DEPTH",
    "MAX_PARAMS",
    "MAX_PARTS",
    "MIME_APPLICATION_OCTET",
    "MIME_APPLICATION_PDF",
    "MIME_APPLICATION_PGP_ENCRYPTED",
    "MIME_APPLICATION_PGP_SIGNATURE",
    "MIME_APPLICATION_PKCS7_MIME",
    "MIME_IMAGE_GIF",
    "MIME_IMAGE_JPEG",
    "MIME_IMAGE_PNG",
    "MIME_MESSAGE_DELIVERY_STATUS",
    "MIME_MESSAGE_DISPOSITION_NOTIFICATION",
    "MIME_MESSAGE_EMAIL",
    "MIME_MULTIPART_ALTERNATIVE",
    "MIME_MULTIPART_ENCRYPTED",
    "MIME_MULTIPART_MIXED",
    "MIME_MULTIPART_RELATED",
    "MIME_MULTIPART_SIGNED",
    "MIME_TEXT_CALENDAR",
    "MIME_TEXT_ENRICHED",
    "MIME_TEXT_HTML",
    "MIME_TEXT_PLAIN",
    "QUOTE_ESCAPE_HEADERS",
    "Content",
    "Mail",
]

MIME_MULTIPART_MIXED = "multipart/mixed"
MIME_MULTIPART_ALTERNATIVE = "multipart/alternative"
MIME_MULTIPART_RELATED = "multipart/related"
MIME_MULTIPART_SIGNED = "multipart/signed"
MIME_MULTIPART_ENCRYPTED = "multipart/encrypted"
MIME_TEXT_PLAIN = "text/plain"
MIME_TEXT_HTML = "text/html"
MIME_TEXT_ENRICHED = "text/enriched"
MIME_TEXT_CALENDAR = "text/calendar"
MIME_MESSAGE_EMAIL = "message/rfc822"
MIME_MESSAGE_DELIVERY_STATUS = "message/delivery-status"
MIME_MESSAGE_DISPOSITION_NOTIFICATION = "message/disposition-notification"
MIME_IMAGE_JPEG = "image/jpeg"
MIME_IMAGE_PNG = "image/png"
MIME_IMAGE_GIF = "image/gif"
MIME_APPLICATION_PDF = "application/pdf"
MIME_APPLICATION_OCTET = "application/octet-stream"
MIME_APPLICATION_PKCS7_MIME = "application/pkcs7-mime"
MIME_APPLICATION_PGP_ENCRYPTED = "application/pgp-encrypted"
MIME_APPLICATION_PGP_SIGNATURE = "application/pgp-signature"

QUOTE_ESCAPE_HEADERS: tuple[str, ...] = ("from", "to", "cc", "bcc", "reply-to", "sender")
"""Fields that :meth:`Mail.headers` decodes in quote-escape mode by default (as Go does)."""

MAX_DEPTH = 64
"""Deepest MIME nesting :meth:`Mail.body` follows; deeper is an attack, not mail."""
MAX_PARTS = 10_000
"""Most entities (the root and every part, at any depth) in one :meth:`Mail.body` tree."""
MAX_BOUNDARY = 200
"""Longest multipart boundary accepted (RFC 2046 5.1.1 allows 70; some mailers go beyond)."""
MAX_PARAMS = 64
"""Parameters read from one Content-Type or Content-Disposition value; later ones are ignored."""
_B64_BODY = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_EMPTY_LINE = re.compile(rb"\n\r?\n")  # the end of a header block (see parse_header_block)
_PARAM_STOP = re.compile(r'[;"]')
_QUOTE_STOP = re.compile(r'["\\]')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# RFC 2231 3 and 4: name*, name*N, name*N* (N: 0..999, plenty for any file name).
_RFC2231_NAME = re.compile(r"([A-Za-z0-9_!#$%&'+.^`|~-]+)\*(?:([0-9]{1,3})(\*)?)?")


def _literal(fields: list[tuple[bytes, bytes]]) -> Headers:
    # Names are ASCII by construction (parse_header_block rule 2).
    return Headers([(n.decode("ascii"), v.decode("utf-8", "surrogateescape")) for n, v in fields])


def _header_end(data: bytes, body_offset: int) -> int:
    """Where the header lines end: ``body_offset`` minus the empty line, if there is one."""
    if body_offset == 0 or data[body_offset - 1] != 0x0A:
        return body_offset
    k = body_offset - 1
    if k > 0 and data[k - 1] == 0x0D:
        k -= 1
    # An empty line starts the input or follows a line feed.
    if k == 0 or data[k - 1] == 0x0A:
        return k
    return body_offset


class Mail:
    """A message split into header fields and body.

    Args:
        data: The message as received (``Envelope.data``): CRLF or LF line endings.
        utf8: The transaction used SMTPUTF8 (RFC 6531), so raw UTF-8 in headers is expected.

    Attributes:
        raw_headers: The header lines with their line endings, without the empty line.
        utf8: As passed in.
    """

    __slots__ = ("_data", "_decoded", "_fields", "_offset", "raw_headers", "utf8")

    def __init__(self, data: bytes, utf8: bool = False) -> None:
        """Split ``data``; a message without an empty line is all headers and no body."""
        fields, offset = parse_header_block(data)
        self._data = data
        self._fields = fields
        self._offset = offset
        self._decoded: Headers | None = None
        self.utf8 = utf8
        self.raw_headers: bytes = data[: _header_end(data, offset)]

    @property
    def raw_body(self) -> bytes:
        """The bytes after the empty line (``b""`` for a headers-only message)."""
        return self._data[self._offset :]

    def headers_literal(self) -> Headers:
        """The header fields exactly as sent: no RFC 2047 decoding.

        Values are the raw bytes decoded as UTF-8 with ``surrogateescape``: lossless, and
        plain text for ASCII and RFC 6532 UTF-8 headers.
        """
        return _literal(self._fields)

    def headers(
        self, quote_escape: Iterable[str] | None = None, quote_none: bool = False
    ) -> Headers:
        """The header fields with RFC 2047 encoded words decoded (Go ``Headers()``).

        Address fields (``From``, ``To``, ``Cc``, ``Bcc``, ``Reply-To``, ``Sender``) are decoded
        word by word, and a decoded word holding a special such as ``,`` is put in quotes, so
        the value still parses as addresses: ``=?UTF-8?Q?Doe=2C_J?= <j@x.y>`` becomes
        ``"Doe, J" <j@x.y>``. Other fields follow RFC 2047 6.2 (white space between two
        encoded words is dropped).

        Args:
            quote_escape: More field names (any case) to decode in quote-escape mode.
            quote_none: Start from no quote-escape fields instead of the default six
                (``quote_escape`` still adds its names).

        Returns:
            Fresh :class:`Headers`; bytes that are not UTF-8 become U+FFFD.
        """
        escape = set() if quote_none else set(QUOTE_ESCAPE_HEADERS)
        if quote_escape is not None:
            escape.update(name.lower() for name in quote_escape)
        items: list[tuple[str, str]] = []
        append = items.append
        for raw_name, raw_value in self._fields:
            name = raw_name.decode("ascii")
            value = raw_value.decode("utf-8", "replace")
            if b"=?" in raw_value:
                if name.lower() in escape:
                    value = decode_quote_escape(value)
                else:
                    value = decode_header(value)
            append((name, value))
        return Headers(items)

    def _default_headers(self) -> Headers:
        if self._decoded is None:
            self._decoded = self.headers()
        return self._decoded

    def get(self, name: str) -> str | None:
        """The first decoded value of field ``name`` (any case), or None."""
        return self._default_headers().get(name)

    def get_all(self, name: str) -> list[str]:
        """Every decoded value of field ``name`` (any case), in order."""
        return self._default_headers().get_all(name)

    def from_(self) -> Address:
        """The ``From`` mailbox (see :meth:`Headers.from_`)."""
        return self._default_headers().from_()

    def to(self) -> list[Address]:
        """The ``To`` mailboxes (see :meth:`Headers.to`)."""
        return self._default_headers().to()

    def body(self) -> Content:
        """The MIME tree of the message; the root's headers are all of the message's.

        The tree shares the message's bytes: every entity keeps offsets into them, and
        ``Content.body``/``Content.raw`` slice on access. Besides that buffer the tree keeps
        only its entities' parsed header fields (header blocks never overlap, so at most the
        message's size) and a few hundred bytes per entity, for at most :data:`MAX_PARTS`
        entities. The work is linear in the message size for each nesting level (each level
        looks for its own boundary in its body), with at most :data:`MAX_DEPTH` levels.

        Raises:
            MailParseError: A multipart entity has no boundary or one longer than
                :data:`MAX_BOUNDARY`, nesting exceeds :data:`MAX_DEPTH` levels, or the tree
                would hold more than :data:`MAX_PARTS` entities.
        """
        data = self._data
        budget = [MAX_PARTS - 1]
        return _entity(
            _literal(self._fields), data, 0, self._offset, len(data), "text/plain", 0, budget
        )


def _header_block_end(data: bytes, start: int, end: int) -> int:
    """Where the header block of ``data[start:end]`` ends, its empty line included.

    Only the header block is read (parse_header_block rule 1), never the body after it.
    """
    if data.startswith(b"\n", start, end):
        return start + 1
    if data.startswith(b"\r\n", start, end):
        return start + 2
    m = _EMPTY_LINE.search(data, start, end)
    return end if m is None else m.end()


def _entity(
    headers: Headers,
    data: bytes,
    start: int,
    body_start: int,
    end: int,
    default_type: str,
    depth: int,
    budget: list[int],
) -> Content:
    content = Content(headers, b"", default_type=default_type)
    content._raw = (data, start, end)
    content._body = (data, body_start, end)
    ctype = content.content_type()
    if not ctype.startswith("multipart/"):
        return content
    if depth >= MAX_DEPTH:
        raise MailParseError("mail: MIME parts nested too deeply")
    boundary = content.param("boundary")
    if not boundary:
        raise MailParseError("mail: no boundary in Content-Type params")
    # RFC 2046 5.1.5: parts of a multipart/digest default to message/rfc822.
    child_default = MIME_MESSAGE_EMAIL if ctype == "multipart/digest" else "text/plain"
    content._body = (b"", 0, 0)
    if len(boundary) > MAX_BOUNDARY:
        raise MailParseError(f"mail: boundary longer than {MAX_BOUNDARY} characters")
    delim = boundary.encode("utf-8", "surrogateescape")
    spans = _split_multipart(data, body_start, end, delim, budget[0])
    budget[0] -= len(spans)
    for part_start, part_end in spans:
        # Parse a copy of the header block only: the part's body stays in the shared buffer.
        head_end = _header_block_end(data, part_start, part_end)
        fields, off = parse_header_block(data[part_start:head_end])
        content.children.append(
            _entity(
                _literal(fields),
                data,
                part_start,
                part_start + off,
                part_end,
                child_default,
                depth + 1,
                budget,
            )
        )
    return content


def _split_multipart(
    data: bytes, start: int, end: int, boundary: bytes, limit: int
) -> list[tuple[int, int]]:
    """The parts between ``--boundary`` delimiter lines in ``data[start:end]`` (RFC 2046 5.1.1).

    A delimiter starts a line; transport padding (SP/HTAB) may follow it. The line break before
    a delimiter belongs to it, not to the part. The preamble and epilogue are dropped; a missing
    close delimiter ends the last part at ``end``. Returns ``(start, end)`` offsets into
    ``data``, in order; more than ``limit`` parts is an error.

    The delimiter lines are found by one regular expression that starts with a literal, so the
    scan, false starts such as ``--boundaryX`` included, runs in C, once over the body.
    """
    tail = re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    parts: list[tuple[int, int]] = []
    part = -1
    m = re.compile(rb"--" + tail).match(data, start, end)
    if m is None:
        after_line = re.compile(rb"\n--" + tail)
        m = after_line.search(data, start, end)
    else:
        after_line = None
    while m is not None:
        i = m.start() if data[m.start()] != 0x0A else m.start() + 1  # where "--" begins
        if part >= 0:
            stop = i
            if stop > part and data[stop - 1] == 0x0A:
                stop -= 1
                if stop > part and data[stop - 1] == 0x0D:
                    stop -= 1
            parts.append((part, stop))
            if len(parts) > limit:
                raise MailParseError(f"mail: more than {MAX_PARTS} MIME parts")
        if m.group(1) is not None:  # the close delimiter
            return parts
        part = m.end()
        if after_line is None:
            after_line = re.compile(rb"\n--" + tail)
        # The line break that ended this delimiter starts the next one's line.
        m = after_line.search(data, part - 1 if data[part - 1] == 0x0A else part, end)
    if part >= 0:
        parts.append((part, end))
        if len(parts) > limit:
            raise MailParseError(f"mail: more than {MAX_PARTS} MIME parts")
    return parts


_Span = tuple[bytes, int, int]
_Param = tuple[str, bool]  # value, and whether it came from an RFC 2231 extended form


def _slice(span: _Span) -> bytes:
    buf, start, end = span
    return buf if start == 0 and end == len(buf) else buf[start:end]


def _split_params(value: str) -> list[str]:
    """``value`` cut at each ``;`` outside quoted strings: at most ``MAX_PARAMS + 1`` pieces."""
    pieces: list[str] = []
    n = len(value)
    piece = i = 0
    while len(pieces) <= MAX_PARAMS:
        m = _PARAM_STOP.search(value, i)
        if m is None:
            pieces.append(value[piece:])
            return pieces
        i = m.start()
        if value[i] == ";":
            pieces.append(value[piece:i])
            piece = i = i + 1
            continue
        # A quoted string (RFC 2045 5.1, RFC 822 3.3): skip to its closing quote; a backslash
        # quotes the character after it. An unclosed quote runs to the end.
        i += 1
        while True:
            m = _QUOTE_STOP.search(value, i)
            if m is None:
                i = n
                break
            if value[m.start()] == "\\":
                i = m.start() + 2
                continue
            i = m.end()
            break
    return pieces  # parameters past MAX_PARAMS are ignored


def _decode_2231(sections: list[tuple[int, int, str, bool]]) -> _Param:
    """Join RFC 2231 sections (number, order, text, encoded) into one value."""
    sections.sort()
    charset = ""
    chunks: list[bytes] = []
    texts: list[str] = []
    extended = False
    last = -2
    for k, (num, _order, text, encoded) in enumerate(sections):
        if num == last:
            continue  # a repeated section number: the first one counts
        last = num
        if encoded:
            if k == 0:
                # RFC 2231 4: charset'language'value, in the first section only.
                fields = text.split("'", 2)
                if len(fields) == 3:
                    charset, _language, text = fields
            extended = True
            chunks.append(unquote_to_bytes(text.encode("utf-8", "surrogateescape")))
        else:
            chunks.append(text.encode("utf-8", "surrogateescape"))
            texts.append(text)
    if not extended:
        return "".join(texts), False
    raw = b"".join(chunks)
    codec = lookup_codec(charset) if charset else None
    return (raw.decode("utf-8", "replace") if codec is None else decode_text(raw, codec)), True


def _parse_params(value: str) -> dict[str, _Param]:
    """The parameters of a Content-Type or Content-Disposition value (RFC 2045 5.1, RFC 2231).

    Names are lowercased; for a repeated name the first wins, and an RFC 2231 form
    (``name*``, ``name*0``...) wins over a plain ``name=`` (RFC 6266 4.3). One linear pass,
    at most :data:`MAX_PARAMS` parameters.
    """
    params: dict[str, _Param] = {}
    extended: dict[str, list[tuple[int, int, str, bool]]] = {}
    for order, piece in enumerate(_split_params(value)[1:]):
        raw_name, eq, val = piece.partition("=")
        name = raw_name.strip().lower()
        val = val.strip() if eq else ""
        if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
            val = _QUOTED_PAIR.sub(r"\1", val[1:-1])
        m = _RFC2231_NAME.fullmatch(name)
        if m is None:
            params.setdefault(name, (val, False))
            continue
        num = m.group(2)
        # name* is one encoded section; name*N is section N, encoded when it ends with "*".
        section = (-1 if num is None else int(num), order, val, num is None or bool(m.group(3)))
        extended.setdefault(m.group(1), []).append(section)
    for name, sections in extended.items():
        if any(sec[0] == -1 for sec in sections):
            sections = [next(sec for sec in sections if sec[0] == -1)]
        params[name] = _decode_2231(sections)
    return params


class Content:
    """One MIME entity: its header fields, its body, and its parts if it is a multipart.

    Attributes:
        headers: The entity's header fields, literal (not RFC 2047 decoded).
        body: The body bytes, still transfer-encoded (``b""`` for a multipart: see
            ``children``). Use :meth:`payload`, :meth:`decode` or :meth:`text` to decode.
        children: The parts of a multipart entity, in order.
        raw: The entity as it appeared in the message: header lines, empty line, body.
    """

    __slots__ = ("_body", "_default_type", "_params", "_raw", "children", "headers")

    def __init__(
        self,
        headers: Headers,
        body: bytes,
        children: list[Content] | None = None,
        *,
        raw: bytes = b"",
        default_type: str = "text/plain",
    ) -> None:
        """Build an entity; :meth:`Mail.body` does this for you."""
        self.headers = headers
        self._body: _Span = (body, 0, len(body))
        self._raw: _Span = (raw, 0, len(raw))
        self.children: list[Content] = [] if children is None else children
        self._default_type = default_type
        self._params: dict[str, dict[str, _Param]] = {}

    @property
    def body(self) -> bytes:
        """The body bytes (a fresh slice of the message on each access: keep it if reused)."""
        return _slice(self._body)

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = (value, 0, len(value))

    @property
    def raw(self) -> bytes:
        """The entity as it appeared in the message (sliced on each access, like ``body``)."""
        return _slice(self._raw)

    @raw.setter
    def raw(self, value: bytes) -> None:
        self._raw = (value, 0, len(value))

    def __repr__(self) -> str:
        _, start, end = self._body
        kind = self.content_type()
        return f"<Content {kind} body={end - start} bytes children={len(self.children)}>"

    def _get_params(self, header: str) -> dict[str, _Param]:
        # smtpx's own linear parser (the stdlib's _parseparam is quadratic in the ";" count).
        key = header.lower()
        params = self._params.get(key)
        if params is None:
            value = self.headers.get(header)
            params = {} if value is None else _parse_params(value)
            self._params[key] = params
        return params

    def content_type(self) -> str:
        """The lowercased media type, ``text/plain`` when absent or invalid (RFC 2045 5.2).

        A part of a ``multipart/digest`` without Content-Type is ``message/rfc822`` (RFC 2046
        5.1.5); an invalid value is always ``text/plain``.
        """
        value = self.headers.get("Content-Type")
        if value is None:
            return self._default_type
        media = value.partition(";")[0].strip().lower()
        return media if media.count("/") == 1 else "text/plain"

    def _param(self, name: str, header: str) -> _Param | None:
        return self._get_params(header).get(name.lower())

    def param(self, name: str, header: str = "Content-Type") -> str | None:
        """A parameter of ``header`` (RFC 2045 5.1, RFC 2231 encodings decoded), or None.

        At most :data:`MAX_PARAMS` parameters of a field are read. RFC 2231 continuations are
        joined and decoded from their charset (an unknown one decodes as UTF-8 with U+FFFD).
        """
        found = self._param(name, header)
        return None if found is None else found[0]

    def charset(self) -> str | None:
        """The lowercased ``charset`` parameter of Content-Type, or None."""
        value = self.param("charset")
        return None if value is None else value.lower()

    def encoding(self) -> str:
        """The lowercased Content-Transfer-Encoding, ``7bit`` when absent (RFC 2045 6.1)."""
        value = self.headers.get("Content-Transfer-Encoding")
        return "7bit" if value is None else value.strip().lower() or "7bit"

    def payload(self) -> bytes:
        """The body with its transfer encoding undone (no charset conversion).

        The encoding name matches case-insensitively (RFC 2045 6.1; Go's did not). Base64 may
        contain line breaks and white space (RFC 2045 6.8), nothing else.

        Raises:
            MailParseError: Invalid base64, or an unknown encoding (``unknown encoding: x``).
        """
        cte = self.encoding()
        body = self.body
        if cte in ("7bit", "8bit", "binary"):
            return body
        if cte == "quoted-printable":
            return binascii.a2b_qp(body)
        if cte == "base64":
            compact = body.translate(None, b" \t\r\n")
            if _B64_BODY.fullmatch(compact) is None:
                raise MailParseError("mail: invalid base64 body")
            return binascii.a2b_base64(compact)
        raise MailParseError(f"mail: unknown encoding: {cte}")

    def decode(self) -> bytes:
        """The body transfer-decoded and converted to UTF-8 bytes (Go ``Decode()``).

        The charset is the ``charset`` parameter (default ``utf-8``, passed through as is).
        An unknown charset leaves the bytes unchanged, as in Go.

        Raises:
            MailParseError: As :meth:`payload`.
        """
        data = self.payload()
        label = self.charset() or "utf-8"
        if label == "utf-8":
            return data
        codec = lookup_codec(label)
        if codec is None:
            return data
        return decode_text(data, codec).encode("utf-8")

    def text(self) -> str:
        """The body as text: transfer-decoded, then decoded from its charset.

        Bad bytes and unknown charsets decode as UTF-8 with U+FFFD replacements.

        Raises:
            MailParseError: As :meth:`payload`.
        """
        data = self.payload()
        codec = lookup_codec(self.charset() or "utf-8")
        return data.decode("utf-8", "replace") if codec is None else decode_text(data, codec)

    def walk(self) -> Iterator[tuple[Content, int]]:
        """Every entity of the tree with its depth (root 0), depth first, in order."""
        stack: list[tuple[Content, int]] = [(self, 0)]
        while stack:
            node, level = stack.pop()
            yield node, level
            stack.extend((child, level + 1) for child in reversed(node.children))

    def flatten(self) -> list[Content]:
        """The leaves of the tree (see :meth:`leaf`), in order."""
        return [node for node, _ in self.walk() if node.leaf()]

    def leaf(self) -> bool:
        """True when the entity has no parts and is not a multipart."""
        return not self.children and not self.content_type().startswith("multipart/")

    def disposition(self) -> str:
        """The lowercased Content-Disposition type (RFC 2183), ``""`` when absent."""
        value = self.headers.get("Content-Disposition")
        if value is None:
            return ""
        return value.split(";", 1)[0].strip().lower()

    def is_attachment(self) -> bool:
        """Content-Disposition is ``attachment`` (any case, even with broken parameters)."""
        return self.disposition() == "attachment"

    def is_inline(self) -> bool:
        """Content-Disposition is ``inline`` (any case)."""
        return self.disposition() == "inline"

    def is_form(self) -> bool:
        """Content-Disposition is ``form-data`` (RFC 7578)."""
        return self.disposition() == "form-data"

    def as_attachment(self) -> Content:
        """This entity if :meth:`is_attachment`; raises ``MailParseError`` otherwise."""
        if not self.is_attachment():
            raise MailParseError("mail: not an attachment")
        return self

    def as_inline(self) -> Content:
        """This entity if :meth:`is_inline`; raises ``MailParseError`` otherwise."""
        if not self.is_inline():
            raise MailParseError("mail: not an inline")
        return self

    def as_form(self) -> Content:
        """This entity if :meth:`is_form`; raises ``MailParseError`` otherwise."""
        if not self.is_form():
            raise MailParseError("mail: not a form")
        return self

    def filename(self) -> str:
        """The file name: Content-Disposition ``filename``, else Content-Type ``name``.

        RFC 2231 forms (``filename*=UTF-8''%E8%AF%95.pdf``) are decoded. A plain value is
        percent-decoded as in Go (``my%20file.pdf`` is ``my file.pdf``), but ``+`` stays ``+``
        and a stray ``%`` stays (Go made ``a+b.pdf`` into ``a b.pdf`` and failed on ``%``).
        RFC 2047 encoded words, which some mailers put in file names, are decoded too.

        Raises:
            MailParseError: Neither parameter is present or non-empty.
        """
        for param, header in (("filename", "Content-Disposition"), ("name", "Content-Type")):
            found = self._param(param, header)
            if found is None:
                continue
            value, extended = found
            if not extended:
                value = unquote(value, errors="replace")
            if "=?" in value:
                value = decode_header(value)
            if value:
                return value
        raise MailParseError(
            "mail: no filename in Content-Disposition nor name in Content-Type params"
        )

    def name(self) -> str:
        """The Content-Disposition ``name`` parameter (a form field's name, RFC 7578 4.2).

        Raises:
            MailParseError: The parameter is missing or empty.
        """
        value = self.param("name", "Content-Disposition")
        if not value:
            raise MailParseError("mail: no name in Content-Disposition params")
        return value
