"""DMARC (RFC 7489): record parsing, policy discovery, identifier alignment and evaluation.

The pieces the Go package lacks or gets wrong are done here:

* discovery falls back to the Organizational Domain (RFC 7489 6.6.3 step 4), found with the
  Public Suffix List shipped offline by the ``publicsuffixlist`` package (RFC 7489 3.2);
* relaxed alignment compares Organizational Domains, so ``evilexample.com`` never aligns with
  ``example.com`` (RFC 7489 3.1.1, 3.1.2); strict alignment is an exact, case-insensitive match;
* the identifier checked is the RFC 5322 From domain (``header.from``), not the envelope's;
* TXT answers that are not DMARC records are ignored, and several DMARC records mean no
  policy (RFC 7489 6.6.3 step 3);
* ``sp`` and ``pct`` are applied (RFC 7489 6.3, 6.6.4), with an injectable random source.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import dns.asyncresolver
from publicsuffixlist import PublicSuffixList

from . import FAIL, NONE, PASS, PERMERROR, TEMPERROR, DMARCResult, _dns
from .dkim import Verification

__all__ = [
    "ALIGNMENT_RELAXED",
    "ALIGNMENT_STRICT",
    "MAX_AUTHOR_DOMAINS",
    "MAX_FROM_LENGTH",
    "POLICY_NONE",
    "POLICY_QUARANTINE",
    "POLICY_REJECT",
    "Authors",
    "DMARCRecordError",
    "DMARCTempError",
    "Evaluation",
    "Record",
    "aligned",
    "author_domains",
    "discover",
    "evaluate",
    "header_from_domain",
    "is_dmarc_record",
    "organizational_domain",
    "parse_record",
    "verdict",
]

POLICY_NONE = "none"
POLICY_QUARANTINE = "quarantine"
POLICY_REJECT = "reject"
ALIGNMENT_RELAXED = "r"
ALIGNMENT_STRICT = "s"

_POLICIES = (POLICY_NONE, POLICY_QUARANTINE, POLICY_REJECT)
_FAILURE_OPTIONS = ("0", "1", "d", "s")
# RFC 7489 6.4: a DMARC URI is a URI (RFC 3986) with an optional "!" size suffix.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s,!]+(?:![0-9]+[kmgt]?)?\Z", re.IGNORECASE)
_TAG_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class DMARCRecordError(ValueError):
    """A DMARC record is malformed; the message says which tag and why."""


@dataclass(frozen=True)
class Record:
    """A parsed DMARC policy record (RFC 7489 6.3; the Go ``Record`` fields).

    Attributes:
        policy: ``p=``: none, quarantine or reject.
        subdomain_policy: ``sp=``, or None when absent (then ``p`` applies to subdomains).
        dkim_alignment: ``adkim=``: ``r`` (default) or ``s``.
        spf_alignment: ``aspf=``: ``r`` (default) or ``s``.
        percent: ``pct=`` 0..100, or None when absent (meaning 100).
        failure_options: ``fo=`` values (``0`` default, ``1``, ``d``, ``s``).
        report_format: ``rf=`` values (default ``afrf``).
        report_interval: ``ri=`` seconds (default 86400).
        report_uri_aggregate: ``rua=`` URIs.
        report_uri_failure: ``ruf=`` URIs.
        discarded: What :func:`parse_record` ignored for a bad value (RFC 7489 6.3), as
            written (``pct=150``, ``fo=2``, ``rua=not-a-uri``); empty for a clean record.
    """

    policy: str
    subdomain_policy: str | None = None
    dkim_alignment: str = ALIGNMENT_RELAXED
    spf_alignment: str = ALIGNMENT_RELAXED
    percent: int | None = None
    failure_options: tuple[str, ...] = ("0",)
    report_format: tuple[str, ...] = ("afrf",)
    report_interval: int = 86400
    report_uri_aggregate: tuple[str, ...] = ()
    report_uri_failure: tuple[str, ...] = ()
    discarded: tuple[str, ...] = ()


def is_dmarc_record(txt: str) -> bool:
    """True if ``txt`` starts with the ``v=DMARC1`` tag (RFC 7489 6.6.3 step 2)."""
    return re.match(r"v[ \t]*=[ \t]*DMARC1[ \t]*(;|\Z)", txt.lstrip(" \t")) is not None


def _uris(tag: str, value: str) -> tuple[str, ...]:
    uris = tuple(u.strip() for u in value.split(",") if u.strip())
    for uri in uris:
        if not _URI.match(uri):
            raise DMARCRecordError(f"invalid URI in '{tag}': {uri!r}")
    return uris


def _valid_uris(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The valid and the invalid URIs of a ``rua``/``ruf`` list, each in written order."""
    uris = [u.strip() for u in value.split(",") if u.strip()]
    return tuple(u for u in uris if _URI.match(u)), tuple(u for u in uris if not _URI.match(u))


def _number(value: str) -> int | None:
    # ASCII digits only ("²".isdigit() is true), and few enough for int() (Python refuses more
    # than 4,300 digits): every value these tags allow has at most ten.
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    return int(value)


def parse_record(txt: str) -> Record:
    """Parse one DMARC TXT record (RFC 7489 6.4).

    ``v=DMARC1`` must be the first tag and ``p`` must be present and valid. Unknown tags are
    ignored, and so (RFC 7489 6.3: "syntax errors in the remainder of the record SHOULD be
    discarded in favor of default values") is an optional tag with a bad value (``pct=150``,
    ``adkim=x``, ``ri=abc``, ``fo=2``, ``rf=iodef``), a tag without ``=``, or a repeated
    optional tag (the first one counts): such a tag takes its default value and is listed in
    :attr:`Record.discarded`. In ``rua``, ``ruf``, ``fo`` and ``rf`` only the bad entries are
    dropped; the list falls back to its default when no entry is left. The parse is one pass,
    linear in the record's length (at most one DNS answer, 65,535 octets).

    Raises:
        DMARCRecordError: The record cannot carry a policy, e.g. ``record is missing a 'p'
            parameter``, ``invalid policy 'bogus' for parameter 'p'``, ``invalid policy 'maybe'
            for parameter 'sp'`` (a bad ``sp`` is not discarded: a ``p=none`` subdomain policy
            would be weaker than the one meant), ``duplicate parameter 'p'``.
    """
    if not is_dmarc_record(txt):
        raise DMARCRecordError("not a DMARC record: it must start with v=DMARC1")
    tags: dict[str, str] = {}
    discarded: list[str] = []
    for spec in txt.split(";"):
        if not spec.strip():
            continue
        name, sep, value = spec.partition("=")
        name = name.strip().lower()
        if not sep or not _TAG_NAME.fullmatch(name):
            discarded.append(spec.strip())
            continue
        if name in tags:
            if name in ("v", "p", "sp"):
                raise DMARCRecordError(f"duplicate parameter '{name}'")
            discarded.append(spec.strip())
            continue
        tags[name] = value.strip()
    if "p" not in tags:
        raise DMARCRecordError("record is missing a 'p' parameter")
    policy = tags["p"].lower()
    if policy not in _POLICIES:
        raise DMARCRecordError(f"invalid policy {tags['p']!r} for parameter 'p'")
    sub: str | None = None
    if "sp" in tags:
        sub = tags["sp"].lower()
        if sub not in _POLICIES:
            raise DMARCRecordError(f"invalid policy {tags['sp']!r} for parameter 'sp'")

    def bad(tag: str, value: str) -> None:
        discarded.append(f"{tag}={value}")

    align = {}
    for tag in ("adkim", "aspf"):
        value = tags.get(tag, ALIGNMENT_RELAXED).lower()
        if value not in (ALIGNMENT_RELAXED, ALIGNMENT_STRICT):
            bad(tag, tags[tag])
            value = ALIGNMENT_RELAXED
        align[tag] = value
    percent: int | None = None
    if "pct" in tags:
        percent = _number(tags["pct"])
        if percent is None or percent > 100:
            bad("pct", tags["pct"])
            percent = None
    interval = 86400
    if "ri" in tags:
        number = _number(tags["ri"])
        if number is None or not 0 < number < 2**32:
            bad("ri", tags["ri"])
        else:
            interval = number
    lists: dict[str, tuple[str, ...]] = {}
    for tag, allowed, default in (("fo", _FAILURE_OPTIONS, ("0",)), ("rf", ("afrf",), ("afrf",))):
        items = [v.strip().lower() for v in tags.get(tag, "").split(":")] if tag in tags else []
        good = tuple(v for v in items if v in allowed)
        for item in items:
            if item not in allowed:
                bad(tag, item)
        lists[tag] = good or default
    for tag in ("rua", "ruf"):
        good, wrong = _valid_uris(tags.get(tag, ""))
        for uri in wrong:
            bad(tag, uri)
        lists[tag] = good
    return Record(
        policy=policy,
        subdomain_policy=sub,
        dkim_alignment=align["adkim"],
        spf_alignment=align["aspf"],
        percent=percent,
        failure_options=lists["fo"],
        report_format=lists["rf"],
        report_interval=interval,
        report_uri_aggregate=lists["rua"],
        report_uri_failure=lists["ruf"],
        discarded=tuple(discarded),
    )


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list shipped with the package: no network


def _normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def organizational_domain(domain: str) -> str:
    """The Organizational Domain (RFC 7489 3.2): the public suffix plus one label.

    A domain that is itself a public suffix is its own Organizational Domain.
    """
    domain = _normal(domain)
    if not domain:
        return ""
    return _psl().privatesuffix(domain) or domain


def aligned(identifier: str, header_from: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 3.1).

    Strict: the domains are equal. Relaxed: their Organizational Domains are equal, which is
    not the same as a suffix match (``evilexample.com`` is not aligned with ``example.com``).
    """
    a, b = _normal(identifier), _normal(header_from)
    if not a or not b:
        return False
    if mode == ALIGNMENT_STRICT:
        return a == b
    return organizational_domain(a) == organizational_domain(b)


class DMARCTempError(Exception):
    """The DMARC record could not be fetched now (DNS timeout or SERVFAIL)."""


async def _records_at(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    try:
        txts = await _dns.lookup_txt(resolver, "_dmarc." + domain)
    except _dns.DNSTempError as exc:
        raise DMARCTempError(str(exc)) from exc
    except _dns.DNSPermError:
        return []
    return [t for t in txts if is_dmarc_record(t)]


async def discover(
    header_from: str, resolver: dns.asyncresolver.Resolver | None = None
) -> tuple[Record | None, str]:
    """Find the DMARC policy for ``header_from`` (RFC 7489 6.6.3).

    Returns:
        ``(record, policy_domain)``; ``(None, "")`` when there is no (single) policy.

    Raises:
        DMARCRecordError: The record found is malformed (and has no usable ``rua`` to fall
            back on ``p=none``, RFC 7489 6.6.3 step 6).
        DMARCTempError: DNS failed temporarily (evaluate() turns it into temperror).
    """
    if resolver is None:
        resolver = _dns.default_resolver()
    domain = _normal(header_from)
    candidates = [domain]
    org = organizational_domain(domain)
    if org and org != domain:
        candidates.append(org)
    for candidate in candidates:
        records = await _records_at(resolver, candidate)
        if len(records) > 1:
            # RFC 7489 6.6.3 step 3: several records end discovery; DMARC is not applied.
            return None, ""
        if records:
            return _lenient_parse(records[0]), candidate
    return None, ""


def _lenient_parse(txt: str) -> Record:
    try:
        return parse_record(txt)
    except DMARCRecordError as exc:
        # RFC 7489 6.6.3 step 6: a bad p/sp with a valid rua acts as p=none.
        if "'p'" in str(exc) or "'sp'" in str(exc):
            match = re.search(r"(?:^|;)\s*rua\s*=([^;]*)", txt, re.IGNORECASE)
            if match:
                try:
                    uris = _uris("rua", match.group(1))
                except DMARCRecordError:
                    uris = ()
                if uris:
                    return Record(policy=POLICY_NONE, report_uri_aggregate=uris)
        raise


@dataclass(frozen=True)
class Evaluation:
    """The DMARC verdict for one message.

    Attributes:
        result: ``none``, ``pass``, ``fail``, ``temperror`` or ``permerror`` (RFC 7489 11.2).
        reason: A human-readable explanation.
        header_from: The RFC 5322 From domain evaluated.
        policy_domain: Where the record was found ("" if none).
        record: The record, if one was found.
        policy: The policy that applies (``p`` or, for a subdomain, ``sp``); "" without record.
        disposition: What the receiver should do after ``pct`` sampling: ``none``,
            ``quarantine`` or ``reject`` (RFC 7489 6.6.4). Always ``none`` unless ``fail``.
        spf_aligned: SPF passed for a domain aligned with header_from.
        dkim_aligned: A DKIM signature passed for a domain aligned with header_from.
    """

    result: str
    reason: str = ""
    header_from: str = ""
    policy_domain: str = ""
    record: Record | None = None
    policy: str = ""
    disposition: str = POLICY_NONE
    spf_aligned: bool = False
    dkim_aligned: bool = False

    def to_result(self) -> DMARCResult:
        """The Authentication-Results entry (``dmarc=... header.from=...``)."""
        return DMARCResult(value=self.result, reason=self.reason, header_from=self.header_from)


async def evaluate(
    header_from: str,
    *,
    spf_result: str = NONE,
    spf_domain: str = "",
    dkim: Sequence[Verification] = (),
    resolver: dns.asyncresolver.Resolver | None = None,
    rand: Callable[[], float] = random.random,
) -> Evaluation:
    """Evaluate DMARC for a message (RFC 7489 6.6).

    Args:
        header_from: The RFC 5322 From domain (see :func:`header_from_domain`).
        spf_result: The SPF result for the MAIL FROM identity (``pass`` counts).
        spf_domain: The domain SPF checked (MAIL FROM's, or HELO's for a null sender).
        dkim: The DKIM verifications; passing ones count.
        resolver: The resolver for ``_dmarc`` lookups.
        rand: Returns a float in [0, 1) for ``pct`` sampling (injectable for tests).

    Returns:
        The Evaluation. A missing From domain is ``permerror``; no policy is ``none``.
    """
    domain = _normal(header_from)
    if not domain:
        return Evaluation(PERMERROR, "no usable RFC5322.From domain")
    try:
        record, policy_domain = await discover(domain, resolver)
    except DMARCTempError as exc:
        return Evaluation(TEMPERROR, f"DMARC lookup failed: {exc}", domain)
    except DMARCRecordError as exc:
        return Evaluation(PERMERROR, f"invalid DMARC record: {exc}", domain)
    return verdict(
        domain,
        record,
        policy_domain,
        spf_result=spf_result,
        spf_domain=spf_domain,
        dkim=dkim,
        rand=rand,
    )


def verdict(
    header_from: str,
    record: Record | None,
    policy_domain: str,
    *,
    spf_result: str = NONE,
    spf_domain: str = "",
    dkim: Sequence[Verification] = (),
    rand: Callable[[], float] = random.random,
) -> Evaluation:
    """The evaluation step of :func:`evaluate` once discovery is done (no I/O).

    Args:
        header_from: The RFC 5322 From domain.
        record: The record :func:`discover` found, or None.
        policy_domain: Where it was found.
        spf_result: As for :func:`evaluate`.
        spf_domain: As for :func:`evaluate`.
        dkim: As for :func:`evaluate`.
        rand: As for :func:`evaluate`.
    """
    domain = _normal(header_from)
    if not domain:
        return Evaluation(PERMERROR, "no usable RFC5322.From domain")
    if record is None:
        return Evaluation(NONE, "no DMARC policy", domain)

    spf_ok = spf_result == PASS and aligned(spf_domain, domain, record.spf_alignment)
    dkim_ok = any(v.passed and aligned(v.domain, domain, record.dkim_alignment) for v in dkim)
    # RFC 7489 6.3 sp: applies when the record came from the Organizational Domain for a
    # subdomain's mail.
    policy = record.policy
    if policy_domain != domain and record.subdomain_policy is not None:
        policy = record.subdomain_policy
    if spf_ok or dkim_ok:
        how = " and ".join(n for n, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        result, reason, disposition = PASS, f"aligned {how} passed", POLICY_NONE
    else:
        result, reason, disposition = FAIL, "no aligned SPF or DKIM pass", policy
        percent = 100 if record.percent is None else record.percent
        if policy != POLICY_NONE and not rand() * 100 < percent:
            # RFC 7489 6.6.4: a message not sampled gets the next weaker policy.
            disposition = POLICY_QUARANTINE if policy == POLICY_REJECT else POLICY_NONE
    return Evaluation(
        result,
        reason,
        header_from=domain,
        policy_domain=policy_domain,
        record=record,
        policy=policy,
        disposition=disposition,
        spf_aligned=spf_ok,
        dkim_aligned=dkim_ok,
    )


MAX_FROM_LENGTH = 8192
"""Longest From field body read for DMARC, in octets as received (folds included).

A longer field is not parsed: DMARC answers ``permerror`` and, under ``reject_dmarc``, the
message is refused (its author could not be checked). Real From fields are well under 1 KiB.
"""
MAX_AUTHOR_DOMAINS = 10
"""Most distinct author domains evaluated for one message (RFC 7489 6.6.1); more is a failure.

Each costs up to two DNS lookups (the domain and its Organizational Domain).
"""


@dataclass(frozen=True)
class Authors:
    """The author domains of a message: the domains of its RFC 5322 From mailboxes.

    Attributes:
        domains: The distinct domains (lowercased, without a trailing dot), in order of
            appearance; empty when ``error`` is set or the From field names no mailbox.
        error: Why the author domains could not be determined ("" when they could): no From
            field, several From fields (RFC 5322 3.6 allows one), a From field that does not
            parse as an address list (RFC 5322 3.4), is over :data:`MAX_FROM_LENGTH` octets, or
            holds more than :data:`MAX_AUTHOR_DOMAINS` domains.
        refuse: The error hides who the author is (a MUA may still show one): a message with
            it must not get past ``reject_dmarc``. False for no From field at all, or for a
            From field that holds no mailbox (an empty group).
    """

    domains: tuple[str, ...] = ()
    error: str = ""
    refuse: bool = False


# RFC 5322 2.2: a field starts a line (not a fold) with its name; the name is compared as
# _header_spans does (surrounding whitespace stripped, case ignored). Only the first line of a
# message may start with SP/HTAB and still open a field.
# The second pattern starts with a literal newline, which the regex engine looks for at C speed;
# one opening with "^" or an alternation is tried at every offset (0.5 s for an 8 MB field).
_FIRST_FROM = re.compile(rb"[ \t\x0b\x0c]*from[ \t\r\x0b\x0c]*:", re.I)
_NEXT_FROM = re.compile(rb"\n[\x0b\x0c]*from[ \t\r\x0b\x0c]*:", re.I)
_FIELD_END = re.compile(rb"\n(?![ \t])")


def _header_end(message: bytes) -> int:
    """Where the header section ends: the first empty line (as _header_spans finds it)."""
    if message[:1] == b"\n" or message[:2] == b"\r\n":
        return 0
    crlf = message.find(b"\n\r\n")
    end = len(message) if crlf < 0 else crlf + 1
    lf = message.find(b"\n\n", 0, end)
    return end if lf < 0 else lf + 1


def _from_fields(message: bytes, header_end: int) -> list[int]:
    """Where the body of each From field starts (just after its colon); at most two."""
    starts: list[int] = []
    first = _FIRST_FROM.match(message, 0, header_end)
    if first is not None:
        starts.append(first.end())
    for found in _NEXT_FROM.finditer(message, 0, header_end):
        if len(starts) == 2:
            break
        starts.append(found.end())
    return starts


def author_domains(message: bytes, *, max_length: int = MAX_FROM_LENGTH) -> Authors:
    """The RFC 5322 From domains of ``message`` (RFC 7489 6.6.1), in time linear in its size.

    The header section is scanned at C speed (``bytes.find``, and regular expressions that
    start on a literal newline and never backtrack past a line), the From field is cut at
    ``max_length`` octets before anything is decoded, and its address list is read by a
    one-pass tokenizer (comments nest by counting, never by recursion): a hostile From field
    costs about what receiving it did, and nothing here raises.

    Args:
        message: The message as received (CRLF or LF line ends).
        max_length: The cap on the From field's body, in octets (:data:`MAX_FROM_LENGTH`).

    Returns:
        The :class:`Authors`.
    """
    header_end = _header_end(message)
    starts = _from_fields(message, header_end)
    if not starts:
        return Authors(error="no RFC5322.From field")
    if len(starts) > 1:
        return Authors(error="several RFC5322.From fields", refuse=True)
    start = starts[0]
    end_match = _FIELD_END.search(message, start, header_end)
    end = end_match.start() if end_match is not None else header_end
    if end - start > max_length:
        return Authors(error=f"RFC5322.From field longer than {max_length} octets", refuse=True)
    raw = message[start:end].replace(b"\r", b"").replace(b"\n", b"")
    try:
        domains = _address_list_domains(raw.decode("utf-8", "replace"))
    except _AddressError as exc:
        return Authors(error=f"malformed RFC5322.From: {exc}", refuse=True)
    unique = tuple(dict.fromkeys(_normal(d) for d in domains))
    if len(unique) > MAX_AUTHOR_DOMAINS:
        return Authors(error=f"more than {MAX_AUTHOR_DOMAINS} RFC5322.From domains", refuse=True)
    if not unique:
        return Authors(error="no mailbox in RFC5322.From")
    return Authors(unique)


def header_from_domain(message: bytes) -> str:
    """The RFC 5322 From domain of ``message`` (RFC 7489 6.6.1), or "" if unusable.

    A message with no From field, several From fields, no address, an unparsable From, or
    addresses in more than one domain gives "" (see :func:`author_domains` for all of them).
    """
    authors = author_domains(message)
    return authors.domains[0] if len(authors.domains) == 1 else ""


class _AddressError(ValueError):
    """The From field is not an RFC 5322 3.4 address list."""


# RFC 5322 3.2.3 specials, less "." (kept inside atoms: dot-atoms and obs-phrase, 4.1).
_SPECIALS = frozenset('()<>[]:;@\\,"')
_WSP = frozenset(" \t")


def _tokens(text: str) -> list[str]:
    """Atoms (dots included), quoted strings (as ``"...``), domain literals and specials.

    CFWS is dropped. One pass; nested comments are tracked with a depth counter.
    """
    tokens: list[str] = []
    pos, n = 0, len(text)
    while pos < n:
        char = text[pos]
        if char in _WSP:
            pos += 1
        elif char == "(":
            depth = 0
            while pos < n:
                c = text[pos]
                if c == "\\":
                    pos += 1
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                pos += 1
            if pos >= n:
                raise _AddressError("unterminated comment")
            pos += 1
        elif char == '"':
            close = pos + 1
            while close < n and text[close] != '"':
                close += 2 if text[close] == "\\" else 1
            if close >= n:
                raise _AddressError("unterminated quoted string")
            tokens.append(text[pos:close])  # the opening quote marks the kind
            pos = close + 1
        elif char == "[":
            close = pos + 1
            while close < n and text[close] not in "[]":
                close += 2 if text[close] == "\\" else 1
            if close >= n or text[close] != "]":
                raise _AddressError("malformed domain literal")
            tokens.append(text[pos : close + 1])
            pos = close + 1
        elif char in _SPECIALS:
            if char in ")]\\":
                raise _AddressError(f"unexpected {char!r}")
            tokens.append(char)
            pos += 1
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIALS and text[pos] not in _WSP:
                pos += 1
            tokens.append(text[start:pos])
    return tokens


def _is_word(token: str) -> bool:
    return token[:1] == '"' or token[:1] not in _SPECIALS


def _addr_spec_domain(tokens: list[str]) -> str:
    """The domain of ``local-part "@" domain`` (RFC 5322 3.4.1, obs-local-part allowed)."""
    if tokens.count("@") != 1:
        raise _AddressError("an address needs exactly one '@'")
    at = tokens.index("@")
    local, domain = tokens[:at], tokens[at + 1 :]
    if not local or not all(_is_word(t) for t in local):
        raise _AddressError("malformed local-part")
    if len(domain) != 1:
        raise _AddressError("malformed domain")
    name = domain[0]
    if name.startswith("["):
        return name  # a domain literal: no DMARC record can exist for it
    # A dot-atom (RFC 5322 3.2.3); one final dot (an absolute name) is tolerated.
    if name[:1] == '"' or not _is_word(name) or "" in name.removesuffix(".").split("."):
        raise _AddressError(f"malformed domain {name!r}")
    return name


def _address_list_domains(text: str) -> list[str]:
    """The domain of every mailbox of an RFC 5322 3.4 address-list (groups included).

    Mailboxes are ``addr-spec`` or ``[display-name] "<" [obs-route] addr-spec ">"``; empty
    list elements (obs-mbox-list) are skipped. Groups do not nest (RFC 5322 3.4), so a ":"
    inside a group is an error: no recursion, and no depth to exhaust.
    """
    domains: list[str] = []
    unit: list[str] = []  # the current mailbox's tokens outside angle brackets
    angle: list[str] | None = None  # tokens inside <...> while open
    addr: list[str] | None = None  # the closed <...> content of the current mailbox
    in_group = False

    def finish() -> None:
        nonlocal unit, addr
        if addr is not None:
            if not all(_is_word(t) for t in unit):
                raise _AddressError("malformed display name")
            domains.append(_addr_spec_domain(addr))
        elif unit:
            domains.append(_addr_spec_domain(unit))
        unit, addr = [], None

    for token in _tokens(text):
        if angle is not None:
            if token == ">":
                # RFC 5322 4.4 obs-route: "@a,@b:" before the address is dropped.
                colon = len(angle) - angle[::-1].index(":") if ":" in angle else 0
                addr, angle = angle[colon:], None
            elif token == "<":
                raise _AddressError("nested '<'")
            else:
                angle.append(token)
        elif token == "<":
            if addr is not None:
                raise _AddressError("two angle addresses in one mailbox")
            angle = []
        elif addr is not None and token not in (",", ";"):
            raise _AddressError(f"unexpected {token!r} after an angle address")
        elif token == ",":
            finish()
        elif token == ":":
            if in_group:
                raise _AddressError("nested group")
            if not unit or not all(_is_word(t) for t in unit):
                raise _AddressError("malformed group name")
            unit, in_group = [], True
        elif token == ";":
            if not in_group:
                raise _AddressError("';' outside a group")
            finish()
            in_group = False
        elif token == ">":
            raise _AddressError("unexpected '>'")
        else:
            unit.append(token)
    if angle is not None:
        raise _AddressError("unterminated '<'")
    if in_group:
        raise _AddressError("unterminated group")
    finish()
    return domains
