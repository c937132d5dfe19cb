"""The one place authres does DNS: async lookups through an injected dnspython resolver.

Every SPF, DKIM and DMARC lookup goes through these functions with a caller-supplied
``dns.asyncresolver.Resolver`` so a user (or a test) can point all of them at one nameserver.

Error mapping, the same for every lookup:

* NXDOMAIN or NOERROR with no answer of the asked type (NODATA) -> an empty list. Those are exactly
  the "void lookups" of RFC 7208 4.6.4, so ``not result`` tells SPF a lookup was void.
* a timeout, SERVFAIL, REFUSED or any other failure to get an answer -> ``DNSTempError``
  (RFC 7208 2.6.6 temperror, RFC 8601 2.7.1 temperror);
* a name that cannot be a DNS name (an empty label, a label over 63 octets, a name over 255
  octets, RFC 1035 2.3.4) -> ``DNSPermError``: asking again will not help.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

__all__ = [
    "DNS_CACHE_SIZE",
    "DNSPermError",
    "DNSTempError",
    "Lookup",
    "default_resolver",
    "lookup_a",
    "lookup_aaaa",
    "lookup_cname",
    "lookup_mx",
    "lookup_ptr",
    "lookup_txt",
    "resolver_at",
    "to_name",
]


DNS_CACHE_SIZE = 10_000
"""Answers the resolvers made here keep (``dns.resolver.LRUCache``), each until its TTL runs out.

A repeated sender then costs no lookups (issue 11: SPF, DKIM keys and DMARC records of the
same domains, message after message). Bounded, so that a stream of distinct names evicts the
least recently used entries instead of growing memory; negative answers (NXDOMAIN) are cached
too, for the SOA minimum TTL (RFC 2308 5). 0 turns the cache off.
"""

Lookup = Callable[[dns.asyncresolver.Resolver, str], Awaitable[list[str]]]
"""The shape shared by every lookup function here."""


class DNSTempError(Exception):
    """The lookup failed in a way that may succeed later (timeout, SERVFAIL, network)."""


class DNSPermError(Exception):
    """The lookup cannot succeed: the name is not a valid DNS name."""


def _with_cache(resolver: dns.asyncresolver.Resolver, size: int) -> dns.asyncresolver.Resolver:
    if size < 0:
        raise ValueError(f"cache_size must be 0 or more, got {size}")
    if size:
        resolver.cache = dns.resolver.LRUCache(max_size=size)
    return resolver


def default_resolver(cache_size: int = DNS_CACHE_SIZE) -> dns.asyncresolver.Resolver:
    """A resolver configured from the system (``/etc/resolv.conf``), with a 5 s lifetime.

    Args:
        cache_size: Answers kept, each for its TTL (``DNS_CACHE_SIZE``); 0 for no cache.
    """
    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = 5.0
    return _with_cache(resolver, cache_size)


def resolver_at(
    host: str, port: int = 53, timeout: float = 5.0, cache_size: int = DNS_CACHE_SIZE
) -> dns.asyncresolver.Resolver:
    """A resolver that asks only the nameserver at ``host``:``port`` (the ``--dns-server`` flag).

    Args:
        host: The nameserver's IP address (IPv4 or IPv6, no brackets).
        port: Its port, UDP and TCP.
        timeout: Seconds before a lookup gives up (and becomes a ``DNSTempError``).
        cache_size: Answers kept, each for its TTL (``DNS_CACHE_SIZE``); 0 for no cache.
    """
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return _with_cache(resolver, cache_size)


def to_name(name: str) -> dns.name.Name:
    """Parse ``name`` as an absolute DNS name (a trailing dot is optional).

    Raises:
        DNSPermError: The text is not a valid DNS name (RFC 1035 2.3.4 limits, empty labels).
    """
    try:
        return dns.name.from_text(name)
    except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
        raise DNSPermError(f"invalid DNS name {name!r}: {exc}") from exc


async def _resolve(
    resolver: dns.asyncresolver.Resolver, name: str | dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.resolver.Answer | None:
    qname = name if isinstance(name, dns.name.Name) else to_name(name)
    try:
        answer = await resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:  # only with raise_on_no_answer, kept for safety
        return None
    except dns.exception.Timeout as exc:
        raise DNSTempError(f"DNS timeout for {qname} {rdtype.name}") from exc
    except dns.resolver.NoNameservers as exc:
        # SERVFAIL/REFUSED from every nameserver (RFC 7208 2.6.6: temperror).
        raise DNSTempError(f"DNS failure for {qname} {rdtype.name}: {exc}") from exc
    except dns.resolver.YXDOMAIN as exc:
        raise DNSPermError(f"DNS name too long after DNAME for {qname}") from exc
    except dns.exception.DNSException as exc:
        raise DNSTempError(f"DNS error for {qname} {rdtype.name}: {exc}") from exc
    except OSError as exc:
        raise DNSTempError(f"DNS network error for {qname} {rdtype.name}: {exc}") from exc
    if answer.rrset is None:
        return None
    return answer


async def lookup_txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """TXT records of ``name``, each record's strings joined without separator (RFC 7208 3.3).

    Bytes are decoded as UTF-8; undecodable bytes become U+FFFD, which no ASCII grammar (SPF,
    DKIM key, DMARC) accepts, so such a record is still rejected by its parser.
    """
    answer = await _resolve(resolver, name, dns.rdatatype.TXT)
    if answer is None:
        return []
    return [
        b"".join(rdata.strings).decode("utf-8", "replace")
        for rdata in answer
        if isinstance(rdata, TXT)
    ]


async def lookup_a(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """IPv4 addresses of ``name`` (CNAMEs followed by the resolver)."""
    answer = await _resolve(resolver, name, dns.rdatatype.A)
    if answer is None:
        return []
    return [rdata.address for rdata in answer if isinstance(rdata, A)]


async def lookup_aaaa(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """IPv6 addresses of ``name`` (CNAMEs followed by the resolver)."""
    answer = await _resolve(resolver, name, dns.rdatatype.AAAA)
    if answer is None:
        return []
    return [rdata.address for rdata in answer if isinstance(rdata, AAAA)]


async def lookup_mx(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """Exchange host names of ``name``'s MX records, lowest preference first.

    Host names are returned without the trailing dot; the null MX target (RFC 7505) is ``""``.
    Ties keep the order the server sent.
    """
    answer = await _resolve(resolver, name, dns.rdatatype.MX)
    if answer is None:
        return []
    records = sorted(
        (rdata for rdata in answer if isinstance(rdata, MX)), key=lambda mx: mx.preference
    )
    return [_host(mx.exchange) for mx in records]


async def lookup_ptr(resolver: dns.asyncresolver.Resolver, ip: str) -> list[str]:
    """Names in the PTR records for the address ``ip`` (in-addr.arpa / ip6.arpa, RFC 3596).

    Raises:
        DNSPermError: ``ip`` is not an IP address.
    """
    try:
        qname = dns.reversename.from_address(ip)
    except (dns.exception.SyntaxError, ValueError) as exc:
        raise DNSPermError(f"not an IP address: {ip!r}") from exc
    answer = await _resolve(resolver, qname, dns.rdatatype.PTR)
    if answer is None:
        return []
    return [_host(rdata.target) for rdata in answer if isinstance(rdata, PTR)]


async def lookup_cname(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """The CNAME target of ``name`` (at most one), without the trailing dot."""
    answer = await _resolve(resolver, name, dns.rdatatype.CNAME)
    if answer is None:
        return []
    return [_host(rdata.target) for rdata in answer if isinstance(rdata, CNAME)]


def _host(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True) if name != dns.name.root else ""
