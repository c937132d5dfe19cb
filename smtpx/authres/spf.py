"""SPF: RFC 7208 ``check_host()`` on dnspython's async resolver.

Every DNS query goes through :mod:`smtpx.authres._dns` with one injected resolver, so nothing blocks
the event loop and a test (or a user) can point all lookups at one nameserver.

Example::

    result = await spf.check("192.0.2.1", "mail.example.com", "user@example.com", resolver)
    if result.result == "fail":
        ...

What is implemented (RFC 7208 sections in brackets): record selection [4.4, 4.5], the full record
grammar with "permerror on any syntax error" [4.6, 12], the mechanisms all, include, a, mx, ptr,
ip4, ip6 and exists with dual CIDR lengths [5], the redirect and exp modifiers [6], macros
including URL-escaping and transformers [7], the 10-term DNS lookup limit, the 10-address limit
per MX/PTR and the 2-void-lookup limit [4.6.4], target-name truncation [4.8], IPv6 clients and
IPv4-mapped IPv6 addresses, and the HELO and MAIL FROM identities [2.3, 2.4].
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Literal, TypeAlias

import dns.asyncresolver

from smtpx.authres import _dns

__all__ = [
    "DEFAULT_LOOKUP_LIMIT",
    "DEFAULT_VOID_LOOKUP_LIMIT",
    "MAX_DOMAIN_SPEC_LENGTH",
    "MAX_RECORD_LENGTH",
    "SPFResult",
    "SPFResultValue",
    "check",
    "check_helo",
    "check_host",
]

SPFResultValue: TypeAlias = Literal[
    "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"
]
"""The seven results of RFC 7208 2.6."""

Identity: TypeAlias = Literal["mailfrom", "helo"]

DEFAULT_LOOKUP_LIMIT = 10
"""RFC 7208 4.6.4: at most 10 terms that cause DNS queries."""
DEFAULT_VOID_LOOKUP_LIMIT = 2
"""RFC 7208 4.6.4: at most 2 lookups that return NXDOMAIN or no answers."""

MAX_RECORD_LENGTH = 4096
"""Longest SPF record (its TXT strings joined, RFC 7208 3.3) that is evaluated, in characters.

A longer record is a ``permerror``, as is a longer explanation (``exp=``) record, which is then
ignored (RFC 7208 6.2). RFC 7208 3.4 asks records to fit in one 512-octet UDP answer; large real
records stay well under 4 KiB, while a hostile one can fill a 64 KiB TCP answer.
"""
MAX_DOMAIN_SPEC_LENGTH = 253
"""Longest domain-spec (the text after ``include:``, ``redirect=``, ...) accepted, in characters.

A domain name is at most 253 octets (RFC 1035 2.3.4, without the root dot); a longer
domain-spec is a ``permerror``. Macros (RFC 7208 7) are counted as written, before expansion.
"""

# RFC 7208 4.6.4: each MX or PTR record set leads to at most 10 address lookups.
_MAX_ADDRESS_LOOKUPS = 10
# RFC 7208 4.8: expanded target names longer than this are cut from the left.
_MAX_NAME_LENGTH = 253


@dataclass(frozen=True, slots=True)
class SPFResult:
    """The outcome of an SPF check.

    Attributes:
        result: One of none, neutral, pass, fail, softfail, temperror, permerror (RFC 7208 2.6).
        reason: Human-readable cause: the matched mechanism (``matched ip4:192.0.2.0/24``), the
            default result, or the error.
        domain: The domain whose policy was evaluated (the <domain> of the top check_host()).
        identity: ``"mailfrom"`` or ``"helo"``: which identity was checked (RFC 7208 2.3, 2.4).
        sender: The <sender> passed to check_host(), e.g. ``user@example.com`` or
            ``postmaster@helo.example.com``.
        explanation: For ``fail`` only: the domain's explanation (``exp=``, RFC 7208 6.2), already
            macro-expanded, or ``""`` when the domain gave none.
    """

    result: SPFResultValue
    reason: str
    domain: str
    identity: Identity = "mailfrom"
    sender: str = ""
    explanation: str = ""


class _PermError(Exception):
    """Evaluation must stop with permerror (RFC 7208 2.6.7)."""


class _TempError(Exception):
    """Evaluation must stop with temperror (RFC 7208 2.6.6)."""


@dataclass
class _Context:
    """State shared by one check_host() and every include/redirect below it."""

    resolver: dns.asyncresolver.Resolver
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    sender: str
    helo: str
    receiver: str
    lookup_limit: int
    void_lookup_limit: int
    lookups: int = 0
    void_lookups: int = 0
    validated_name_cache: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def local_part(self) -> str:
        """The sender's local part (``%{l}``, RFC 7208 7.2)."""
        return self.sender.rpartition("@")[0]

    @property
    def sender_domain(self) -> str:
        """The sender's domain (``%{o}``, RFC 7208 7.2)."""
        return self.sender.rpartition("@")[2]

    def count_lookup(self) -> None:
        # RFC 7208 4.6.4: the term that would be the 11th DNS-querying one is a permerror.
        self.lookups += 1
        if self.lookups > self.lookup_limit:
            raise _PermError("lookup limit reached")

    def count_void(self, answers: list[str]) -> None:
        if not answers:
            self.void_lookups += 1
            if self.void_lookups > self.void_lookup_limit:
                raise _PermError("void lookup limit reached")


# ---------------------------------------------------------------------------------------------
# Record grammar (RFC 7208 4.5, 4.6, 5, 6, 7.1 and the ABNF of section 12)


@dataclass(frozen=True, slots=True)
class _Macro:
    letter: str  # lowercased macro-letter
    upper: bool  # URL-escape the expansion (RFC 7208 7.3)
    digits: int | None  # keep this many right-hand parts
    reverse: bool
    delimiters: str  # default "."


_Token: TypeAlias = "str | _Macro"

_MACRO_RE = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_MODIFIER_RE = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)\Z", re.DOTALL)
_MECHANISM_RE = re.compile(r"(all|include|a|mx|ptr|ip4|ip6|exists)(?=[:/]|\Z)(.*)\Z", re.I | re.S)
_IP4_CIDR_RE = re.compile(r"/(0|[1-9][0-9]?)\Z")
_DUAL_CIDR_RE = re.compile(r"(?:/(0|[1-9][0-9]?))?(?://(0|[1-9][0-9]{0,2}))?\Z")
_IP6_CIDR_RE = re.compile(r"/(0|[1-9][0-9]{0,2})\Z")
_IP4_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
_DOMAIN_MACRO_LETTERS = frozenset("slodiphv")
_EXP_MACRO_LETTERS = _DOMAIN_MACRO_LETTERS | frozenset("crt")


def _parse_macro_string(text: str, *, explanation: bool = False) -> list[_Token]:
    """Split a macro-string into literals and macros (RFC 7208 7.1), or raise _PermError."""
    return _scan_macro_string(text, explanation=explanation)[0]


def _scan_macro_string(text: str, *, explanation: bool = False) -> tuple[list[_Token], int]:
    """Tokenize a macro-string; also return where its last macro-expand ended (0 if none).

    In a domain-spec only visible ASCII other than "%" may appear literally (macro-literal);
    an explanation string (``explanation=True``) also allows spaces.
    """
    tokens: list[_Token] = []
    literal: list[str] = []
    pos = 0
    last_expand_end = 0
    letters = _EXP_MACRO_LETTERS if explanation else _DOMAIN_MACRO_LETTERS
    escapes = {"%": "%", "_": " ", "-": "%20"}
    while pos < len(text):
        char = text[pos]
        if char == "%":
            nxt = text[pos + 1 : pos + 2]
            if nxt in escapes:
                literal.append(escapes[nxt])
                pos += 2
                last_expand_end = pos
                continue
            match = _MACRO_RE.match(text, pos)
            if match is None:
                raise _PermError(f"invalid macro at {text[pos:]!r}")
            letter, digits, rev, delims = match.groups()
            if letter.lower() not in letters:
                raise _PermError(f"macro letter {letter!r} not allowed here")
            # RFC 7208 7.1: at least 128 parts must be supported; more than nine digits
            # keep every part anyway, and int() of thousands of digits raises ValueError.
            significant = digits.lstrip("0")
            count = min(int(significant[:10] or "0"), 10**9) if digits else None
            if count == 0:
                # RFC 7208 7.1: the digit transformer gives how many parts to keep; zero
                # would keep nothing and is treated as a syntax error.
                raise _PermError("macro transformer of zero")
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(_Macro(letter.lower(), letter.isupper(), count, bool(rev), delims or "."))
            pos = last_expand_end = match.end()
            continue
        code = ord(char)
        if not (0x21 <= code <= 0x7E or (explanation and code == 0x20)):
            raise _PermError(f"invalid character {char!r}")
        literal.append(char)
        pos += 1
    if literal:
        tokens.append("".join(literal))
    return tokens, last_expand_end


def _parse_domain_spec(text: str) -> list[_Token]:
    """A domain-spec: a macro-string ending in ``.toplabel`` or a macro-expand (RFC 7208 7.1)."""
    if not text:
        raise _PermError("empty domain-spec")
    if len(text.removesuffix(".")) > MAX_DOMAIN_SPEC_LENGTH:
        raise _PermError(f"domain-spec longer than {MAX_DOMAIN_SPEC_LENGTH} characters")
    tokens, last_expand_end = _scan_macro_string(text)
    # domain-end = ( "." toplabel [ "." ] ) / macro-expand
    trailing = text[last_expand_end:]
    if trailing and not _ends_in_toplabel(trailing):
        raise _PermError(f"invalid domain-spec {text!r}")
    return tokens


_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_LDH = _ALNUM | {"-"}


def _ends_in_toplabel(text: str) -> bool:
    """Whether ``text`` ends in ``"." toplabel [ "." ]`` (RFC 7208 7.1), in one linear pass.

    toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ):
    letters, digits and hyphens, starting and ending with a letter or digit, and holding a
    letter or a hyphen (so not all digits). A backtracking regex for this took time quadratic in
    the label's length (issue 9: one 40 kB record stalled the event loop for seconds).
    """
    _, dot, label = text.removesuffix(".").rpartition(".")
    if not dot or not label or label[0] not in _ALNUM or label[-1] not in _ALNUM:
        return False
    if not set(label) <= _LDH:
        return False
    return "-" in label or not label.isdigit()


@dataclass(frozen=True, slots=True)
class _Mechanism:
    qualifier: str  # one of + - ~ ?
    name: str  # lowercased mechanism name
    text: str  # the term as written, for reasons
    domain: list[_Token] | None = None
    network4: ipaddress.IPv4Network | None = None
    network6: ipaddress.IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class _Record:
    mechanisms: list[_Mechanism]
    redirect: list[_Token] | None
    explanation: list[_Token] | None


_QUALIFIER_RESULTS: dict[str, SPFResultValue] = {
    "+": "pass",
    "-": "fail",
    "~": "softfail",
    "?": "neutral",
}


def _is_spf_record(text: str) -> bool:
    # RFC 7208 4.5: "v=spf1" exactly (case-insensitively), ended by SP or the record's end.
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


def _parse_record(text: str) -> _Record:
    """Parse a whole SPF record; any syntax error anywhere is a permerror (RFC 7208 4.6)."""
    mechanisms: list[_Mechanism] = []
    redirect: list[_Token] | None = None
    explanation: list[_Token] | None = None
    seen: set[str] = set()
    # RFC 7208 4.6.1: terms are separated by one or more SP; no other whitespace.
    for term in text[6:].split(" "):
        if not term:
            continue
        modifier = _MODIFIER_RE.match(term)
        if modifier is not None:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name in ("redirect", "exp"):
                if name in seen:
                    raise _PermError(f"{name}= appears twice")  # RFC 7208 6
                seen.add(name)
                spec = _parse_domain_spec(value)
                if name == "redirect":
                    redirect = spec
                else:
                    explanation = spec
            else:
                # RFC 7208 6: unknown modifiers are ignored, but must still parse.
                _parse_macro_string(value)
            continue
        mechanisms.append(_parse_mechanism(term))
    return _Record(mechanisms, redirect, explanation)


def _parse_mechanism(term: str) -> _Mechanism:
    qualifier = "+"
    body = term
    if body[:1] in _QUALIFIER_RESULTS:
        qualifier, body = body[0], body[1:]
    match = _MECHANISM_RE.match(body)
    if match is None:
        raise _PermError(f"unknown mechanism {term!r}")
    name, rest = match.group(1).lower(), match.group(2)
    if name == "all":
        if rest:
            raise _PermError(f"invalid mechanism {term!r}")
        return _Mechanism(qualifier, name, term)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise _PermError(f"{name} needs a domain-spec: {term!r}")
        return _Mechanism(qualifier, name, term, domain=_parse_domain_spec(rest[1:]))
    if name == "ptr":
        if rest and not rest.startswith(":"):
            raise _PermError(f"invalid mechanism {term!r}")
        domain = _parse_domain_spec(rest[1:]) if rest else None
        return _Mechanism(qualifier, name, term, domain=domain)
    if name in ("a", "mx"):
        cidr = _DUAL_CIDR_RE.search(rest)
        assert cidr is not None  # every part of the pattern is optional
        spec, cidr4, cidr6 = rest[: cidr.start()], cidr.group(1), cidr.group(2)
        if spec and not spec.startswith(":"):
            raise _PermError(f"invalid mechanism {term!r}")
        if cidr4 is not None and int(cidr4) > 32:
            raise _PermError(f"invalid IPv4 prefix length in {term!r}")
        if cidr6 is not None and int(cidr6) > 128:
            raise _PermError(f"invalid IPv6 prefix length in {term!r}")
        domain = _parse_domain_spec(spec[1:]) if spec else None
        return _Mechanism(
            qualifier,
            name,
            term,
            domain=domain,
            cidr4=32 if cidr4 is None else int(cidr4),
            cidr6=128 if cidr6 is None else int(cidr6),
        )
    if not rest.startswith(":"):
        raise _PermError(f"{name} needs an address: {term!r}")
    value = rest[1:]
    if name == "ip4":
        prefix = _IP4_CIDR_RE.search(value)
        address = value[: prefix.start()] if prefix else value
        length = int(prefix.group(1)) if prefix else 32
        if not _IP4_RE.match(address) or length > 32:
            raise _PermError(f"invalid ip4 network in {term!r}")
        try:
            net4 = ipaddress.IPv4Network(f"{address}/{length}", strict=False)
        except ValueError as exc:
            raise _PermError(f"invalid ip4 network in {term!r}") from exc
        return _Mechanism(qualifier, name, term, network4=net4)
    prefix = _IP6_CIDR_RE.search(value)
    address = value[: prefix.start()] if prefix else value
    length = int(prefix.group(1)) if prefix else 128
    if "%" in address or "/" in address or length > 128:
        raise _PermError(f"invalid ip6 network in {term!r}")
    try:
        net6 = ipaddress.IPv6Network(f"{address}/{length}", strict=False)
    except ValueError as exc:
        raise _PermError(f"invalid ip6 network in {term!r}") from exc
    return _Mechanism(qualifier, name, term, network6=net6)


# ---------------------------------------------------------------------------------------------
# Macro expansion (RFC 7208 7.2-7.4)


async def _expand(
    tokens: list[_Token], ctx: _Context, domain: str, *, explanation: bool = False
) -> str:
    parts: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            parts.append(token)
            continue
        value = await _macro_value(token.letter, ctx, domain)
        pieces = re.split("[" + re.escape(token.delimiters) + "]", value)
        if token.reverse:
            pieces.reverse()
        if token.digits is not None:
            pieces = pieces[-token.digits :]
        value = ".".join(pieces)
        if token.upper:
            # RFC 7208 7.3: uppercase letters URL-escape the value (RFC 3986 unreserved kept).
            value = urllib.parse.quote(value, safe="-._~")
        parts.append(value)
    return "".join(parts)


async def _macro_value(letter: str, ctx: _Context, domain: str) -> str:
    ip = ctx.ip
    if letter == "s":
        return ctx.sender
    if letter == "l":
        return ctx.local_part
    if letter == "o":
        return ctx.sender_domain
    if letter == "d":
        return domain
    if letter == "i":
        if isinstance(ip, ipaddress.IPv4Address):
            return str(ip)
        return ".".join(ip.exploded.replace(":", ""))  # RFC 7208 7.3: dot-separated nibbles
    if letter == "c":
        return str(ip)
    if letter == "v":
        return "in-addr" if isinstance(ip, ipaddress.IPv4Address) else "ip6"
    if letter == "h":
        return ctx.helo
    if letter == "r":
        return ctx.receiver
    if letter == "t":
        return str(int(time.time()))
    # "p": the validated domain name of the client (RFC 7208 7.3, 5.5); discouraged, but valid.
    if domain not in ctx.validated_name_cache:
        ctx.validated_name_cache[domain] = await _validated_name(ctx, domain)
    return ctx.validated_name_cache[domain]


async def _validated_name(ctx: _Context, domain: str) -> str:
    try:
        names = await _dns.lookup_ptr(ctx.resolver, str(ctx.ip))
    except (_dns.DNSTempError, _dns.DNSPermError):
        return "unknown"
    validated: list[str] = []
    for name in names[:_MAX_ADDRESS_LOOKUPS]:
        if await _address_matches(ctx, name, 32, 128, ignore_errors=True):
            validated.append(name)
    target = domain.lower().rstrip(".")
    for name in validated:
        if name.lower() == target:
            return name
    for name in validated:
        if name.lower().endswith("." + target):
            return name
    return validated[0] if validated else "unknown"


def _target_name(expanded: str) -> str:
    # RFC 7208 4.8: over-long names lose labels from the left until they fit.
    # The loop "drop the first label while too long" in one pass: the result starts after the
    # first dot far enough right, or after the last dot if none is (repeated splitting copied
    # the rest of the name once per label: quadratic in an attacker's %{l}).
    length = len(expanded.rstrip("."))
    if length <= _MAX_NAME_LENGTH:
        return expanded
    cut = expanded.find(".", length - _MAX_NAME_LENGTH - 1)
    if cut < 0:
        cut = expanded.rfind(".")
    return expanded[cut + 1 :]


# ---------------------------------------------------------------------------------------------
# Evaluation (RFC 7208 4, 5, 6)


def _valid_domain(domain: str) -> bool:
    """RFC 7208 4.3: a <domain> check_host() can look up at all (multi-label, RFC 1035 sizes)."""
    name = domain[:-1] if domain.endswith(".") else domain
    labels = name.split(".")
    if len(labels) < 2 or len(name) > _MAX_NAME_LENGTH:
        return False
    return all(0 < len(label) <= 63 for label in labels)


async def _address_matches(
    ctx: _Context, name: str, cidr4: int, cidr6: int, *, ignore_errors: bool = False
) -> bool:
    """Whether one of ``name``'s addresses of the client's family covers the client's IP."""
    try:
        if isinstance(ctx.ip, ipaddress.IPv4Address):
            addresses = await _dns.lookup_a(ctx.resolver, name)
            net_len = cidr4
        else:
            addresses = await _dns.lookup_aaaa(ctx.resolver, name)
            net_len = cidr6
    except _dns.DNSPermError:
        return False
    except _dns.DNSTempError as exc:
        if ignore_errors:
            return False
        raise _TempError(str(exc)) from exc
    return any(ctx.ip in ipaddress.ip_network(f"{a}/{net_len}", strict=False) for a in addresses)


async def _lookup(ctx: _Context, lookup: _dns.Lookup, name: str) -> list[str]:
    """A mechanism's main lookup: errors are temperror, invalid names no match (RFC 7208 5)."""
    try:
        answers = await lookup(ctx.resolver, name)
    except _dns.DNSTempError as exc:
        raise _TempError(str(exc)) from exc
    except _dns.DNSPermError:
        # CHANGES 2008.08 of the test suite: an RFC 1035-invalid target name is no match (or
        # permerror), never temperror.  We treat it as a name that does not exist.
        answers = []
    ctx.count_void(answers)
    return answers


async def _mechanism_matches(ctx: _Context, mech: _Mechanism, domain: str) -> bool:
    name = mech.name
    if name == "all":
        return True
    if name == "ip4":
        return isinstance(ctx.ip, ipaddress.IPv4Address) and ctx.ip in (mech.network4 or ())
    if name == "ip6":
        return isinstance(ctx.ip, ipaddress.IPv6Address) and ctx.ip in (mech.network6 or ())
    ctx.count_lookup()
    target = domain
    if mech.domain is not None:
        target = _target_name(await _expand(mech.domain, ctx, domain))
    if name == "include":
        # RFC 7208 5.2: only pass matches; none is a permerror.
        inner = await _check(ctx, target)
        if inner.result == "pass":
            return True
        if inner.result in ("fail", "softfail", "neutral"):
            return False
        if inner.result == "temperror":
            raise _TempError(inner.reason)
        raise _PermError(f"include:{target}: {inner.reason}")
    if name == "exists":
        # RFC 7208 5.7: always an A query, whatever the client's address family.
        return bool(await _lookup(ctx, _dns.lookup_a, target))
    if name == "a":
        family = _dns.lookup_a if isinstance(ctx.ip, ipaddress.IPv4Address) else _dns.lookup_aaaa
        addresses = await _lookup(ctx, family, target)
        net_len = mech.cidr4 if isinstance(ctx.ip, ipaddress.IPv4Address) else mech.cidr6
        return any(
            ctx.ip in ipaddress.ip_network(f"{a}/{net_len}", strict=False) for a in addresses
        )
    if name == "mx":
        hosts = await _lookup(ctx, _dns.lookup_mx, target)
        if len(hosts) > _MAX_ADDRESS_LOOKUPS:
            # RFC 7208 4.6.4: more than 10 MX records to look up is a permerror.
            raise _PermError(f"more than {_MAX_ADDRESS_LOOKUPS} MX records for {target}")
        for host in hosts:
            if host and await _address_matches(ctx, host, mech.cidr4, mech.cidr6):
                return True
        return False
    # ptr (RFC 7208 5.5): errors on the PTR query or on an address query are no match.
    try:
        names = await _dns.lookup_ptr(ctx.resolver, str(ctx.ip))
    except (_dns.DNSTempError, _dns.DNSPermError):
        return False
    ctx.count_void(names)
    wanted = target.lower().rstrip(".")
    for host in names[:_MAX_ADDRESS_LOOKUPS]:
        lowered = host.lower()
        if lowered != wanted and not lowered.endswith("." + wanted):
            continue
        if await _address_matches(ctx, host, 32, 128, ignore_errors=True):
            return True
    return False


async def _fetch_record(ctx: _Context, domain: str) -> str | None:
    """The one SPF record of ``domain`` (RFC 7208 4.4, 4.5), None if it has none."""
    try:
        records = await _dns.lookup_txt(ctx.resolver, domain)
    except _dns.DNSTempError as exc:
        raise _TempError(str(exc)) from exc
    except _dns.DNSPermError:
        return None
    spf = [r for r in records if _is_spf_record(r)]
    if len(spf) > 1:
        raise _PermError("multiple SPF records")
    if spf and len(spf[0]) > MAX_RECORD_LENGTH:
        raise _PermError(f"SPF record longer than {MAX_RECORD_LENGTH} characters")
    return spf[0] if spf else None


async def _check(ctx: _Context, domain: str) -> SPFResult:
    """check_host() for one <domain>, sharing limits with the caller (include/redirect)."""
    if not _valid_domain(domain):
        return SPFResult("none", f"invalid domain {domain!r}", domain)
    try:
        text = await _fetch_record(ctx, domain)
        if text is None:
            return SPFResult("none", "no SPF record found", domain)
        record = _parse_record(text)
        for mech in record.mechanisms:
            if await _mechanism_matches(ctx, mech, domain):
                result = _QUALIFIER_RESULTS[mech.qualifier]
                explanation = ""
                if result == "fail" and record.explanation is not None:
                    explanation = await _explain(ctx, record.explanation, domain)
                return SPFResult(result, f"matched {mech.text}", domain, explanation=explanation)
        if record.redirect is not None:
            # RFC 7208 6.1: evaluate the target's record as if it were this one; a target
            # without a record is a permerror.
            ctx.count_lookup()
            target = _target_name(await _expand(record.redirect, ctx, domain))
            inner = await _check(ctx, target)
            if inner.result == "none":
                return SPFResult("permerror", f"redirect={target}: {inner.reason}", domain)
            return dataclasses.replace(inner, domain=domain)
        return SPFResult("neutral", "no mechanism matched (default neutral)", domain)
    except _TempError as exc:
        return SPFResult("temperror", str(exc), domain)
    except _PermError as exc:
        return SPFResult("permerror", str(exc), domain)


async def _explain(ctx: _Context, spec: list[_Token], domain: str) -> str:
    """The exp= explanation (RFC 7208 6.2); any problem gives "" (no explanation)."""
    try:
        name = _target_name(await _expand(spec, ctx, domain))
        records = await _dns.lookup_txt(ctx.resolver, name)
        if len(records) != 1 or len(records[0]) > MAX_RECORD_LENGTH:
            return ""
        tokens = _parse_macro_string(records[0], explanation=True)
        return await _expand(tokens, ctx, domain, explanation=True)
    except (_dns.DNSTempError, _dns.DNSPermError, _PermError, _TempError):
        return ""


def _client_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip.strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # An IPv4 client seen through an IPv6 socket: SPF must see the IPv4 address.
        return address.ipv4_mapped
    return address


async def check_host(
    ip: str,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    resolver: dns.asyncresolver.Resolver | None = None,
    receiver: str = "unknown",
    identity: Identity = "mailfrom",
    lookup_limit: int = DEFAULT_LOOKUP_LIMIT,
    void_lookup_limit: int = DEFAULT_VOID_LOOKUP_LIMIT,
) -> SPFResult:
    """RFC 7208 4: evaluate ``domain``'s SPF policy for a message from ``ip``.

    Args:
        ip: The SMTP client's address (IPv4, IPv6 or IPv4-mapped IPv6).
        domain: The domain whose policy to evaluate (the MAIL FROM domain or the HELO name).
        sender: The MAIL FROM address, or ``postmaster@<helo>`` for the HELO identity. A sender
            without a local-part gets ``postmaster`` (RFC 7208 4.3).
        helo: The HELO/EHLO name, for the ``%{h}`` macro.
        resolver: The async resolver for every lookup; the system resolver when None.
        receiver: This host's name, for the ``%{r}`` macro in explanations.
        identity: Which identity this check is for, copied into the result.
        lookup_limit: DNS-querying terms allowed (RFC 7208 4.6.4: 10).
        void_lookup_limit: Lookups with no answer allowed (RFC 7208 4.6.4: 2).

    Returns:
        The result; DNS failures are ``temperror`` and policy errors ``permerror``, never
        exceptions.

    Raises:
        ValueError: ``ip`` is not an IP address.
    """
    client = _client_ip(ip)
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "", sender
    full_sender = f"{local or 'postmaster'}@{sender_domain or domain}"
    ctx = _Context(
        resolver=resolver if resolver is not None else _dns.default_resolver(),
        ip=client,
        sender=full_sender,
        helo=helo,
        receiver=receiver,
        lookup_limit=lookup_limit,
        void_lookup_limit=void_lookup_limit,
    )
    result = await _check(ctx, domain)
    return dataclasses.replace(result, domain=domain, identity=identity, sender=full_sender)


def _is_domain_name(helo: str) -> bool:
    return bool(helo) and not helo.startswith("[") and _valid_domain(helo)


async def check_helo(
    ip: str,
    helo: str,
    resolver: dns.asyncresolver.Resolver | None = None,
    *,
    receiver: str = "unknown",
) -> SPFResult:
    """Check the HELO identity (RFC 7208 2.3): check_host(ip, helo, "postmaster@" + helo).

    An address literal or otherwise invalid HELO name gives ``none`` without any lookup.
    """
    sender = f"postmaster@{helo}"
    if not _is_domain_name(helo):
        return SPFResult("none", f"HELO {helo!r} is not a domain name", helo, "helo", sender)
    return await check_host(
        ip, helo, sender, helo=helo, resolver=resolver, receiver=receiver, identity="helo"
    )


async def check(
    ip: str,
    helo: str,
    mail_from: str,
    resolver: dns.asyncresolver.Resolver | None = None,
    *,
    receiver: str = "unknown",
) -> SPFResult:
    """Check the identity RFC 7208 prescribes for an SMTP transaction.

    With a non-null reverse-path that has a domain, that is the MAIL FROM identity
    (``check_host(ip, <mail_from domain>, mail_from)``). With a null reverse-path (``""`` or
    ``"<>"``) or one without a domain, RFC 7208 2.4 makes the MAIL FROM identity
    ``postmaster@<helo>``, so the HELO identity is checked instead (``identity == "helo"``).

    Args:
        ip: The SMTP client's address.
        helo: The HELO/EHLO argument.
        mail_from: The MAIL FROM address without angle brackets ("" for the null path).
        resolver: The async resolver for every lookup; the system resolver when None.
        receiver: This host's name, for the ``%{r}`` macro in explanations.
    """
    address = mail_from.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        return await check_helo(ip, helo, resolver, receiver=receiver)
    return await check_host(
        ip, domain, address, helo=helo, resolver=resolver, receiver=receiver, identity="mailfrom"
    )
