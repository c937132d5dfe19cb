r"""Authentication-Results header fields (RFC 8601): result types, ``parse`` and ``format``.

The submodules do the checks: :mod:`smtpx.authres.dkim` (RFC 6376), :mod:`smtpx.authres.spf`
(RFC 7208) and :mod:`smtpx.authres.dmarc` (RFC 7489).

Every result type is a frozen dataclass with a ``value`` (the RFC 8601 result keyword, see the
``PASS``, ``FAIL``, ... constants), an optional ``reason`` and its method's properties. Users
add their own methods by subclassing :class:`Result`, naming the ``method`` and the ``PARAMS``
mapping (attribute -> ``ptype.property``), and decorating the class with
:func:`register_method`; :func:`parse` then builds it. Methods nobody registered parse into
:class:`GenericResult`.

Example::

    >>> value = format("mx.example", [SPFResult(PASS, mail_from="a@example.net")])
    >>> value
    'mx.example;\\r\\n  spf=pass smtp.mailfrom=a@example.net'
    >>> parse(value)
    ('mx.example', [SPFResult(value='pass', reason='', mail_from='a@example.net', helo='')])
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from ._middleware import authentication_results, remove_authentication_results

__all__ = [
    "FAIL",
    "HARDFAIL",
    "NEUTRAL",
    "NONE",
    "PASS",
    "PERMERROR",
    "POLICY",
    "SOFTFAIL",
    "TEMPERROR",
    "ARCResult",
    "AuthResult",
    "AuthResultsParseError",
    "DKIMResult",
    "DMARCResult",
    "DomainKeysResult",
    "GenericResult",
    "IPRevResult",
    "Result",
    "SPFResult",
    "SenderIDResult",
    "authentication_results",
    "authserv_id_of",
    "format",
    "parse",
    "register_method",
    "remove_authentication_results",
]

# RFC 8601 2.7 result keywords (hardfail is the Sender ID / old SPF spelling, RFC 4406).
PASS = "pass"
FAIL = "fail"
NONE = "none"
NEUTRAL = "neutral"
POLICY = "policy"
TEMPERROR = "temperror"
PERMERROR = "permerror"
SOFTFAIL = "softfail"
HARDFAIL = "hardfail"


def __getattr__(name: str) -> Any:
    # The middleware needs smtpx.envelope/handler; import it on first use so that importing
    # the parser alone pulls in nothing else of smtpx.
    if name in ("authentication_results", "remove_authentication_results"):
        from . import _middleware  # noqa: PLC0415

        return getattr(_middleware, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class AuthResultsParseError(ValueError):
    """An Authentication-Results value does not follow the RFC 8601 grammar."""


# RFC 8601 2.2: Keyword = ldh-str (RFC 5321); results and methods are keywords.
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\Z")
# RFC 2045 5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
# RFC 5322 3.2.3 dot-atom, for the "[local-part] @ domain-name" form of pvalue (RFC 8601 2.2).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_MAILBOX = re.compile(rf"(?:{_ATEXT}+(?:\.{_ATEXT}+)*)?@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
# RFC 8601 2.2 propspec: ptype "." property (Keywords; "_" allowed in the property for names
# seen in the wild). A property without a ptype (Fastmail's "x-tls=pass version=TLSv1.2",
# Microsoft's "action=none") is not in the grammar, but parse() keeps it, so format() must
# write it back (issue 9 item 20): both use this one rule.
_PARAM_KEY = re.compile(r"(?:[a-z0-9-]+\.)?[a-z0-9_-]+\Z")


def _sanitize(text: str) -> str:
    """Replace control and line-break characters by spaces (no header injection, RFC 5322 2.2).

    C0/C1 controls and DEL (Cc) plus U+2028/U+2029 (Zl, Zp), which some readers treat as
    line ends, never reach the wire.
    """
    if text.isprintable():
        return text
    return "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(text: str) -> str:
    """RFC 2045 ``value``: a token if possible, otherwise a quoted-string."""
    text = _sanitize(text)
    return text if _TOKEN.match(text) else _quote(text)


def _pvalue(text: str) -> str:
    """RFC 8601 ``pvalue``: a value, or ``[local-part] "@" domain-name`` left bare."""
    text = _sanitize(text)
    if _TOKEN.match(text) or _MAILBOX.match(text):
        return text
    return _quote(text)


@dataclass(frozen=True)
class Result:
    """One ``resinfo`` of an Authentication-Results field (RFC 8601 2.2).

    Subclasses set ``method`` and ``PARAMS`` (attribute name -> ``ptype.property``); string
    attributes left empty are not written. Override :meth:`params` and :meth:`from_params` for
    attributes that are not strings.

    Attributes:
        value: The result keyword (``PASS``, ``FAIL``, ...).
        reason: The ``reason=`` text, or "".
    """

    value: str
    reason: str = ""

    method: ClassVar[str] = ""
    PARAMS: ClassVar[Mapping[str, str]] = {}

    def method_name(self) -> str:
        """The method keyword this result is written under, e.g. ``"dkim"``."""
        return self.method

    def params(self) -> dict[str, str]:
        """The properties to write, ``ptype.property`` -> value, empty ones left out."""
        out: dict[str, str] = {}
        for attr, key in self.PARAMS.items():
            val = getattr(self, attr)
            if val:
                out[key] = str(val)
        return out

    @classmethod
    def from_params(cls: type[_R], value: str, reason: str, params: Mapping[str, str]) -> _R:
        """Build the result from parsed properties (keys are lowercased ``ptype.property``).

        Raises:
            AuthResultsParseError: A property has an invalid value.
        """
        kwargs: dict[str, Any] = {a: params.get(k, "") for a, k in cls.PARAMS.items()}
        return cls(value, reason, **kwargs)


_R = TypeVar("_R", bound=Result)

_REGISTRY: dict[str, type[Result]] = {}


def register_method(cls: type[_R]) -> type[_R]:
    """Class decorator: make :func:`parse` build ``cls`` for its ``method``."""
    if not _KEYWORD.match(cls.method):
        raise ValueError(f"invalid method name {cls.method!r}")
    _REGISTRY[cls.method.lower()] = cls
    return cls


@register_method
@dataclass(frozen=True)
class AuthResult(Result):
    """SMTP AUTH (RFC 8601 2.7.4): ``auth=pass smtp.auth=user smtp.mailfrom=user@example.com``.

    Attributes:
        auth: ``smtp.auth``: the authenticated identity.
        mail_from: ``smtp.mailfrom``: the MAIL FROM address, which the IANA Email
            Authentication Parameters registry defines for ``auth`` too (RFC 7601).
    """

    auth: str = ""
    mail_from: str = ""

    method: ClassVar[str] = "auth"
    PARAMS: ClassVar[Mapping[str, str]] = {"auth": "smtp.auth", "mail_from": "smtp.mailfrom"}


@register_method
@dataclass(frozen=True)
class DKIMResult(Result):
    """DKIM (RFC 8601 2.7.1): ``header.d``, ``.i``, ``.s``, ``.b`` (RFC 6008) and ``.a``.

    Attributes:
        domain: The signing domain, ``d=`` of the signature (``header.d``).
        identifier: The agent or user identifier, ``i=`` (``header.i``).
        selector: The key selector, ``s=`` (``header.s``).
        signature: The first characters of the signature, ``b=``, to tell several apart
            (``header.b``, RFC 6008).
        algorithm: The signing algorithm, ``a=``, e.g. ``rsa-sha256`` (``header.a``).
    """

    domain: str = ""
    identifier: str = ""
    selector: str = ""
    signature: str = ""
    algorithm: str = ""

    method: ClassVar[str] = "dkim"
    PARAMS: ClassVar[Mapping[str, str]] = {
        "domain": "header.d",
        "identifier": "header.i",
        "selector": "header.s",
        "signature": "header.b",
        "algorithm": "header.a",
    }


@register_method
@dataclass(frozen=True)
class DomainKeysResult(Result):
    """DomainKeys (RFC 4870, historic): ``header.d``, ``header.from``, ``header.sender``.

    Attributes:
        domain: The signing domain (``header.d``).
        from_: The From address (``header.from``).
        sender: The Sender address (``header.sender``).
    """

    domain: str = ""
    from_: str = ""
    sender: str = ""

    method: ClassVar[str] = "domainkeys"
    PARAMS: ClassVar[Mapping[str, str]] = {
        "domain": "header.d",
        "from_": "header.from",
        "sender": "header.sender",
    }


@register_method
@dataclass(frozen=True)
class IPRevResult(Result):
    """Reverse-DNS check (RFC 8601 2.7.3): ``policy.iprev``.

    Attributes:
        ip: The client IP address that was checked (``policy.iprev``).
    """

    ip: str = ""

    method: ClassVar[str] = "iprev"
    PARAMS: ClassVar[Mapping[str, str]] = {"ip": "policy.iprev"}


@register_method
@dataclass(frozen=True)
class SenderIDResult(Result):
    """Sender ID (RFC 4406, historic): ``header.<header_key>=<header_value>``.

    Attributes:
        header_key: The header field checked, e.g. ``From`` (written lowercased).
        header_value: The address taken from it.
    """

    header_key: str = ""
    header_value: str = ""

    method: ClassVar[str] = "sender-id"

    def params(self) -> dict[str, str]:
        """``header.<header_key>`` -> ``header_value``, or nothing if either is empty."""
        if not self.header_key or not self.header_value:
            return {}
        return {"header." + self.header_key.lower(): self.header_value}

    @classmethod
    def from_params(cls, value: str, reason: str, params: Mapping[str, str]) -> SenderIDResult:
        """Build the result from the first ``header.*`` property."""
        for key, val in params.items():
            if key.startswith("header."):
                return cls(value, reason, key[len("header.") :], val)
        return cls(value, reason)


@register_method
@dataclass(frozen=True)
class SPFResult(Result):
    """SPF (RFC 8601 2.7.2): ``smtp.mailfrom`` and ``smtp.helo``.

    Attributes:
        mail_from: The MAIL FROM identity checked (``smtp.mailfrom``), or "".
        helo: The HELO/EHLO identity checked (``smtp.helo``), or "".
    """

    mail_from: str = ""
    helo: str = ""

    method: ClassVar[str] = "spf"
    PARAMS: ClassVar[Mapping[str, str]] = {"mail_from": "smtp.mailfrom", "helo": "smtp.helo"}


@register_method
@dataclass(frozen=True)
class DMARCResult(Result):
    """DMARC (RFC 7489 11.2): ``header.from`` (the RFC 5322.From domain).

    Attributes:
        header_from: The domain of the message's From header (``header.from``).
    """

    header_from: str = ""

    method: ClassVar[str] = "dmarc"
    PARAMS: ClassVar[Mapping[str, str]] = {"header_from": "header.from"}


@register_method
@dataclass(frozen=True)
class ARCResult(Result):
    """ARC (RFC 8617 10.2): ``smtp.remote-ip`` and ``header.oldest-pass`` (0 = absent).

    Unlike the Go package, it is written as ``arc=...``.

    Attributes:
        remote_ip: The client IP address (``smtp.remote-ip``), or "".
        oldest_pass: The lowest ARC instance that still validates, 1..50, or 0 when absent
            (``header.oldest-pass``).
    """

    remote_ip: str = ""
    oldest_pass: int = 0

    method: ClassVar[str] = "arc"

    def params(self) -> dict[str, str]:
        """``header.oldest-pass`` and ``smtp.remote-ip``, each when set."""
        out: dict[str, str] = {}
        if self.oldest_pass:
            out["header.oldest-pass"] = str(self.oldest_pass)
        if self.remote_ip:
            out["smtp.remote-ip"] = self.remote_ip
        return out

    @classmethod
    def from_params(cls, value: str, reason: str, params: Mapping[str, str]) -> ARCResult:
        """Build the result from ``smtp.remote-ip`` and ``header.oldest-pass``.

        Raises:
            AuthResultsParseError: ``header.oldest-pass`` is not a number from 1 up.
        """
        oldest = params.get("header.oldest-pass", "")
        # RFC 8617 10.2: the oldest-pass value is an instance number, 1..50. ASCII digits only
        # ("²".isdigit() is true), and few of them (int() refuses over 4,300 digits).
        if oldest and (
            not (oldest.isascii() and oldest.isdigit()) or len(oldest) > 9 or int(oldest) < 1
        ):
            raise AuthResultsParseError(f"invalid header.oldest-pass {oldest!r}")
        return cls(value, reason, params.get("smtp.remote-ip", ""), int(oldest or 0))


@dataclass(frozen=True)
class GenericResult(Result):
    """A result of a method without a dedicated class.

    Attributes:
        method_: The method keyword.
        param_values: ``ptype.property`` (lowercase) -> value.
    """

    method_: str = ""
    param_values: Mapping[str, str] = field(default_factory=dict)

    def method_name(self) -> str:
        """The method keyword the result was parsed under (``method_``)."""
        return self.method_

    def params(self) -> dict[str, str]:
        """``param_values`` without the empty ones."""
        return {k: v for k, v in self.param_values.items() if v}

    @classmethod
    def from_params(cls, value: str, reason: str, params: Mapping[str, str]) -> GenericResult:
        """Keep every property as parsed; ``method_`` is set by the parser."""
        return cls(value, reason, "", dict(params))


# ---------------------------------------------------------------------------------------------
# format


def format(authserv_id: str, results: Sequence[Result]) -> str:
    """Build an Authentication-Results field body (RFC 8601 2.2).

    Each result goes on its own line, folded with CRLF and two spaces as the Go package does;
    ``reason`` comes first, the other properties follow sorted by name, and empty ones are left
    out. Values are written as RFC 2045 tokens or quoted strings; control characters and line
    breaks in any value become spaces, so a value can never inject a header line.

    Args:
        authserv_id: The authentication service identifier (usually the host name).
        results: The results; none gives ``authserv-id; none``.

    Raises:
        ValueError: A method name, result keyword or property name is not a valid keyword.
            Whatever :func:`parse` returns is always accepted.
    """
    parts = [_value(authserv_id)]
    if not results:
        return parts[0] + ";\r\n  none"
    for result in results:
        method = result.method_name()
        if not _KEYWORD.match(method):
            raise ValueError(f"invalid Authentication-Results method {method!r}")
        if not _KEYWORD.match(result.value):
            raise ValueError(f"invalid Authentication-Results result {result.value!r}")
        items = [f"{method.lower()}={result.value.lower()}"]
        if result.reason:
            items.append("reason=" + _value(result.reason))
        for key, val in sorted(result.params().items()):
            key = key.lower()
            if not _PARAM_KEY.match(key):
                raise ValueError(f"invalid Authentication-Results property {key!r}")
            items.append(f"{key}={_pvalue(val)}")
        parts.append(" ".join(items))
    return ";\r\n  ".join(parts)


# ---------------------------------------------------------------------------------------------
# parse


class _Lexer:
    """Reads RFC 8601 lexical items, skipping CFWS (RFC 5322 3.2.2) between them."""

    _WORD_STOP = frozenset(' \t\r\n;()"=')
    KEY_STOP = frozenset(' \t\r\n;()"=.')

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        self.skip_cfws()
        return self.pos >= len(self.text)

    def peek(self) -> str:
        self.skip_cfws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_cfws(self) -> None:
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "(":
                self._skip_comment()
            else:
                return

    def _skip_comment(self) -> None:
        # RFC 5322 3.2.2: comments nest and may hold quoted-pairs.
        depth = 0
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == "\\":
                self.pos += 2
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    self.pos += 1
                    return
            self.pos += 1
        raise AuthResultsParseError("unterminated comment")

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise AuthResultsParseError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1

    def quoted_string(self) -> str:
        # Caller saw the opening quote. RFC 5322 3.2.4; a fold inside is unfolded (CRLF removed).
        self.pos += 1
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c == "\\" and self.pos + 1 < len(text):
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c not in "\r\n":
                out.append(c)
            self.pos += 1
        raise AuthResultsParseError("unterminated quoted string")

    def word(self, stop: frozenset[str] = _WORD_STOP) -> str:
        self.skip_cfws()
        start = self.pos
        text = self.text
        while self.pos < len(text) and text[self.pos] not in stop:
            self.pos += 1
        return text[start : self.pos]

    def value(self) -> str:
        """An RFC 2045 value (token or quoted-string), or a bare pvalue word."""
        if self.peek() == '"':
            quoted = self.quoted_string()
            # RFC 8601 pvalue: a quoted local-part followed by "@domain".
            if self.pos < len(self.text) and self.text[self.pos] == "@":
                return quoted + self.word(frozenset(' \t\r\n;()"'))
            return quoted
        # Bare pvalues such as base64 ("abc+/=") may contain "=", so only WSP, ";" and "("
        # end them.
        return self.word(frozenset(' \t\r\n;()"'))


def _parse_authserv_id(lex: _Lexer) -> str:
    if lex.peek() == '"':
        return lex.quoted_string()
    ident = lex.word(frozenset(' \t\r\n;()"'))
    if not ident:
        raise AuthResultsParseError("missing authserv-id")
    return ident


def authserv_id_of(value: str) -> str | None:
    """The authserv-id of an Authentication-Results value, or None if it has none.

    Only the leading identifier is read, so a field with a malformed tail still yields the
    identifier (RFC 8601 5 asks receivers to delete fields that claim their own id).
    """
    try:
        ident = _parse_authserv_id(_Lexer(value))
    except AuthResultsParseError:
        return None
    return ident or None


def parse(value: str) -> tuple[str, list[Result]]:
    """Parse an Authentication-Results field body (RFC 8601 2.2).

    Comments (nested), quoted strings (``;`` inside included), the version token and
    ``none`` are understood. Method names, result keywords and property names are
    lowercased; property values are kept as written.

    Returns:
        ``(authserv_id, results)``; an empty value gives ``("", [])``.

    Raises:
        AuthResultsParseError: The value does not follow the grammar, or the version is not 1.
    """
    lex = _Lexer(value)
    if lex.at_end():
        return "", []
    # RFC 8601 2.2 authserv-id = value: a token, or a quoted-string, which may be empty.
    authserv_id = _parse_authserv_id(lex)
    # RFC 8601 2.2: [CFWS authres-version]; only version 1 exists.
    if lex.peek() not in ("", ";"):
        version = lex.word()
        if version != "1":
            raise AuthResultsParseError(f"unsupported version {version!r}")
    results: list[Result] = []
    while not lex.at_end():
        lex.expect(";")
        if lex.at_end():
            break  # a trailing ";" (seen in the wild and in the Go vectors)
        method = lex.word(frozenset(' \t\r\n;()"=/'))
        if lex.peek() == "/":  # method-version, RFC 8601 2.2
            lex.pos += 1
            lex.word()
        if method.lower() == "none" and lex.peek() in ("", ";"):
            continue  # no-result
        if not _KEYWORD.match(method):
            raise AuthResultsParseError(f"malformed method {method!r}")
        lex.expect("=")
        result = lex.word()
        if not _KEYWORD.match(result):
            raise AuthResultsParseError(f"malformed result {result!r} for {method}")
        reason = ""
        params: dict[str, str] = {}
        while lex.peek() not in ("", ";"):
            key = lex.word(_Lexer.KEY_STOP).lower()
            # RFC 8601 2.2: propspec = ptype [CFWS] "." [CFWS] property [CFWS] "=" pvalue;
            # its own example A.5 puts comments around the dot.
            if key and lex.peek() == ".":
                lex.pos += 1
                key += "." + lex.word(_Lexer.KEY_STOP).lower()
            if not key or (key != "reason" and not _PARAM_KEY.match(key)):
                raise AuthResultsParseError(f"malformed property {key!r} at offset {lex.pos}")
            lex.expect("=")
            val = lex.value()
            if key == "reason":
                reason = val
            else:
                params[key] = val
        results.append(_build(method.lower(), result.lower(), reason, params))
    return authserv_id, results


def _build(method: str, value: str, reason: str, params: Mapping[str, str]) -> Result:
    cls = _REGISTRY.get(method)
    if cls is None:
        return dataclasses.replace(GenericResult.from_params(value, reason, params), method_=method)
    return cls.from_params(value, reason, params)


# ---------------------------------------------------------------------------------------------
# raw header access shared by the dkim, dmarc and middleware modules


def _header_spans(message: bytes) -> tuple[list[tuple[str, int, int]], int]:
    """Header fields of ``message`` as (lowercased name, start, end) byte spans.

    A field runs from its name to the end of its last continuation line, line end included
    (RFC 5322 2.2.3). The second value is where the header section ends (the offset of the
    blank line, or len(message) if there is none). CRLF and bare LF line ends are accepted.
    """
    spans: list[tuple[str, int, int]] = []
    pos = 0
    n = len(message)
    while pos < n:
        eol = message.find(b"\n", pos)
        end = n if eol < 0 else eol + 1
        line = message[pos:end]
        if line in (b"\r\n", b"\n"):
            return spans, pos
        if line[:1] in (b" ", b"\t") and spans:
            name, start, _ = spans[-1]
            spans[-1] = (name, start, end)
        else:
            colon = line.find(b":")
            name = line[:colon].strip().decode("ascii", "replace").lower() if colon > 0 else ""
            spans.append((name, pos, end))
        pos = end
    return spans, n


def _header_fields(message: bytes) -> list[tuple[str, str]]:
    """(lowercased name, unfolded value) for each header field of ``message``."""
    out: list[tuple[str, str]] = []
    spans, _ = _header_spans(message)
    for name, start, end in spans:
        raw = message[start:end]
        colon = raw.find(b":")
        if colon < 0:
            continue
        value = re.sub(rb"\r?\n", b"", raw[colon + 1 :]).decode("utf-8", "replace").strip()
        out.append((name, value))
    return out
