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
import email.message
import email.utils
import re
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

from ._charsets import decode_text, lookup_codec
from ._impl import parse_header_block
from ._mime_words import decode_header, decode_quote_escape
from .address import Address
from .errors import MailParseError
from .headers import Headers

__all__ = [
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

_MAX_DEPTH = 64  # MIME nesting beyond this is an attack, not mail
_B64_BODY = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


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

        Raises:
            MailParseError: A multipart entity has no boundary, or nesting exceeds 64 levels.
        """
        return _entity(_literal(self._fields), self._data, self._offset, "text/plain", 0)


def _entity(headers: Headers, raw: bytes, offset: int, default_type: str, depth: int) -> Content:
    content = Content(headers, raw[offset:], raw=raw, default_type=default_type)
    ctype = content.content_type()
    if not ctype.startswith("multipart/"):
        return content
    if depth >= _MAX_DEPTH:
        raise MailParseError("mail: MIME parts nested too deeply")
    boundary = content.param("boundary")
    if not boundary:
        raise MailParseError("mail: no boundary in Content-Type params")
    # RFC 2046 5.1.5: parts of a multipart/digest default to message/rfc822.
    child_default = MIME_MESSAGE_EMAIL if ctype == "multipart/digest" else "text/plain"
    body = content.body
    content.body = b""
    for part in _split_multipart(body, boundary.encode("utf-8", "surrogateescape")):
        fields, off = parse_header_block(part)
        content.children.append(_entity(_literal(fields), part, off, child_default, depth + 1))
    return content


def _split_multipart(body: bytes, boundary: bytes) -> list[bytes]:
    """The parts between ``--boundary`` delimiter lines (RFC 2046 5.1.1).

    A delimiter starts a line; transport padding (SP/HTAB) may follow it. The line break before
    a delimiter belongs to it, not to the part. The preamble and epilogue are dropped; a missing
    close delimiter ends the last part at the end of the body.
    """
    delim = b"--" + boundary
    parts: list[bytes] = []
    n = len(body)
    pos = 0
    start = -1
    while True:
        i = body.find(delim, pos)
        if i < 0:
            break
        pos = i + 1
        if i > 0 and body[i - 1] != 0x0A:
            continue  # not at a line start
        j = i + len(delim)
        close = body.startswith(b"--", j)
        if close:
            j += 2
        while j < n and body[j] in b" \t":
            j += 1
        if j < n:
            if body[j] == 0x0A:
                eol = j + 1
            elif body.startswith(b"\r\n", j):
                eol = j + 2
            else:
                continue  # e.g. a longer boundary that starts with this one
        else:
            eol = n
        if start >= 0:
            end = i
            if end > start and body[end - 1] == 0x0A:
                end -= 1
                if end > start and body[end - 1] == 0x0D:
                    end -= 1
            parts.append(body[start:end])
        if close:
            return parts
        start = pos = eol
    if start >= 0:
        parts.append(body[start:])
    return parts


class Content:
    """One MIME entity: its header fields, its body, and its parts if it is a multipart.

    Attributes:
        headers: The entity's header fields, literal (not RFC 2047 decoded).
        body: The body bytes, still transfer-encoded (``b""`` for a multipart: see
            ``children``). Use :meth:`payload`, :meth:`decode` or :meth:`text` to decode.
        children: The parts of a multipart entity, in order.
        raw: The entity as it appeared in the message: header lines, empty line, body.
    """

    __slots__ = ("_default_type", "_params", "body", "children", "headers", "raw")

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
        self.body = body
        self.children: list[Content] = [] if children is None else children
        self.raw = raw
        self._default_type = default_type
        self._params: email.message.Message | None = None

    def __repr__(self) -> str:
        return (
            f"<Content {self.content_type()} body={len(self.body)} bytes "
            f"children={len(self.children)}>"
        )

    def _msg(self) -> email.message.Message:
        # The standard library parses Content-Type/-Disposition parameters, RFC 2231 included.
        msg = self._params
        if msg is None:
            msg = email.message.Message()
            msg.set_default_type(self._default_type)
            for name in ("Content-Type", "Content-Disposition"):
                value = self.headers.get(name)
                if value is not None:
                    msg[name] = value
            self._params = msg
        return msg

    def content_type(self) -> str:
        """The lowercased media type, ``text/plain`` when absent or invalid (RFC 2045 5.2)."""
        return self._msg().get_content_type()

    def param(self, name: str, header: str = "Content-Type") -> str | None:
        """A parameter of ``header`` (RFC 2045 5.1, RFC 2231 encodings decoded), or None."""
        value = self._msg().get_param(name, None, header=header.lower())
        if value is None:
            return None
        return email.utils.collapse_rfc2231_value(value)

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
        if cte in ("7bit", "8bit", "binary"):
            return self.body
        if cte == "quoted-printable":
            return binascii.a2b_qp(self.body)
        if cte == "base64":
            compact = self.body.translate(None, b" \t\r\n")
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
            raw = self._msg().get_param(param, None, header=header.lower())
            if raw is None:
                continue
            value = email.utils.collapse_rfc2231_value(raw)
            if not isinstance(raw, tuple):
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
