"""SPF (smtpx.authres.spf) against a real DNS server on loopback: the behaviour a receiver sees."""

from __future__ import annotations

import pytest

from smtpx.authres import spf
from tests.authres.dnsserver import DNSServerFactory, LoopbackDNSServer

ZONE: dict[str, list[tuple[str, str]]] = {
    "example.com": [
        ("TXT", '"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 a:mail.example.com mx ~all"'),
        ("MX", "10 mx.example.com."),
        ("TXT", '"google-site-verification=abc"'),
    ],
    "mail.example.com": [("A", "198.51.100.10"), ("AAAA", "2001:db8:2::10")],
    "mx.example.com": [("A", "203.0.113.5"), ("AAAA", "2001:db8:3::5")],
    "cidr.example.com": [("TXT", '"v=spf1 a:mail.example.com/24//64 -all"')],
    "strict.example.com": [("TXT", '"v=spf1 -all exp=why.example.com"')],
    "why.example.com": [("TXT", '"%{i} may not send for %{d} (%{l} at %{o})"')],
    "neutral.example.com": [("TXT", '"v=spf1 ?all"')],
    "empty.example.com": [("TXT", '"v=spf1"')],
    "inc.example.com": [("TXT", '"v=spf1 include:example.com -all"')],
    "inc-none.example.com": [("TXT", '"v=spf1 include:nospf.example.com -all"')],
    "nospf.example.com": [("A", "192.0.2.99")],
    "redir.example.com": [("TXT", '"v=spf1 redirect=strict.example.com"')],
    "exists.example.com": [("TXT", '"v=spf1 exists:%{ir}.%{v}.allow.example.com -all"')],
    "1.2.0.192.in-addr.allow.example.com": [("A", "127.0.0.2")],
    "ptr.example.com": [("TXT", '"v=spf1 ptr -all"')],
    "7.2.0.192.in-addr.arpa": [("PTR", "host.ptr.example.com.")],
    "8.2.0.192.in-addr.arpa": [("PTR", "liar.ptr.example.com.")],
    "host.ptr.example.com": [("A", "192.0.2.7")],
    "liar.ptr.example.com": [("A", "192.0.2.200")],
    "void.example.com": [
        ("TXT", '"v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com +all"')
    ],
    "void2.example.com": [("TXT", '"v=spf1 a:n1.example.com a:n2.example.com +all"')],
    "two.example.com": [("TXT", '"v=spf1 -all"'), ("TXT", '"v=spf1 +all"')],
    "syntax.example.com": [("TXT", '"v=spf1 ip4:192.0.2.300 +all"')],
    "slow-inc.example.com": [("TXT", '"v=spf1 include:slow.example.com -all"')],
    "broken-inc.example.com": [("TXT", '"v=spf1 include:broken.example.com -all"')],
    "helo.example.net": [("TXT", '"v=spf1 ip4:192.0.2.25 -all"')],
    # Many TXT records: the answer does not fit in 512 bytes, so the lookup must go to TCP.
    "big.example.com": [("TXT", '"v=spf1 ip4:192.0.2.1 -all"')]
    + [("TXT", f'"filler-{i:02d}-{"x" * 100}"') for i in range(8)],
}


def _chain(length: int) -> dict[str, list[tuple[str, str]]]:
    """l0.chain -> include:l1.chain -> ... -> l<length>.chain (+all): ``length`` DNS terms."""
    zone = {
        f"l{i}.chain.example.com": [("TXT", f'"v=spf1 include:l{i + 1}.chain.example.com -all"')]
        for i in range(length)
    }
    zone[f"l{length}.chain.example.com"] = [("TXT", '"v=spf1 +all"')]
    return zone


@pytest.fixture
def server(dns_server: DNSServerFactory) -> LoopbackDNSServer:
    zone = {**ZONE, **_chain(11)}
    return dns_server(
        zone, timeout_names=["slow.example.com"], servfail_names=["broken.example.com"]
    )


async def _host(server: LoopbackDNSServer, ip: str, domain: str, sender: str = "") -> spf.SPFResult:
    return await spf.check_host(
        ip,
        domain,
        sender or f"user@{domain}",
        helo="client.example.org",
        resolver=server.resolver(),
    )


@pytest.mark.parametrize(
    ("ip", "expected", "reason"),
    [
        ("192.0.2.55", "pass", "matched ip4:192.0.2.0/24"),
        ("2001:db8:1::99", "pass", "matched ip6:2001:db8:1::/48"),
        ("198.51.100.10", "pass", "matched a:mail.example.com"),
        ("2001:db8:2::10", "pass", "matched a:mail.example.com"),  # AAAA for an IPv6 client
        ("203.0.113.5", "pass", "matched mx"),
        ("2001:db8:3::5", "pass", "matched mx"),
        ("::ffff:192.0.2.55", "pass", "matched ip4:192.0.2.0/24"),  # IPv4-mapped: seen as IPv4
        ("198.51.100.11", "softfail", "matched ~all"),
        ("2001:db8:4::1", "softfail", "matched ~all"),
    ],
)
async def test_mechanisms_ipv4_and_ipv6(
    server: LoopbackDNSServer, ip: str, expected: str, reason: str
) -> None:
    result = await _host(server, ip, "example.com")
    assert (result.result, result.reason) == (expected, reason)
    assert result.domain == "example.com"
    assert result.identity == "mailfrom"


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("198.51.100.200", "pass"),  # same /24 as mail.example.com
        ("198.51.101.10", "fail"),
        ("2001:db8:2::ffff", "pass"),  # same /64
        ("2001:db8:2:1::10", "fail"),
    ],
)
async def test_dual_cidr_lengths(server: LoopbackDNSServer, ip: str, expected: str) -> None:
    assert (await _host(server, ip, "cidr.example.com")).result == expected


async def test_fail_with_macro_expanded_explanation(server: LoopbackDNSServer) -> None:
    result = await _host(server, "192.0.2.9", "strict.example.com", "joe@strict.example.com")
    assert result.result == "fail"
    assert (
        result.explanation
        == "192.0.2.9 may not send for strict.example.com (joe at strict.example.com)"
    )


async def test_redirect_uses_target_policy_and_explanation(server: LoopbackDNSServer) -> None:
    result = await _host(server, "192.0.2.9", "redir.example.com", "joe@redir.example.com")
    assert result.result == "fail"
    assert result.domain == "redir.example.com"
    # RFC 7208 6.2: %{d} is the redirect target's domain while it is evaluated.
    assert result.explanation.endswith(
        "may not send for strict.example.com (joe at redir.example.com)"
    )


async def test_default_results(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.9", "neutral.example.com")).result == "neutral"
    assert (await _host(server, "192.0.2.9", "empty.example.com")).result == "neutral"
    none = await _host(server, "192.0.2.9", "nospf.example.com")
    assert none.result == "none"
    assert (await _host(server, "192.0.2.9", "nx.example.com")).result == "none"


async def test_include(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.1", "inc.example.com")).result == "pass"
    # include's own ~all does not match: evaluation goes on to -all (RFC 7208 5.2).
    assert (await _host(server, "198.51.100.99", "inc.example.com")).result == "fail"
    # An included domain without a record is a permerror, not a quiet no-match.
    assert (await _host(server, "192.0.2.1", "inc-none.example.com")).result == "permerror"


async def test_exists_with_reversed_ip_macro(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.1", "exists.example.com")).result == "pass"
    assert (await _host(server, "192.0.2.2", "exists.example.com")).result == "fail"


async def test_ptr_requires_forward_confirmation(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.7", "ptr.example.com")).result == "pass"
    # 192.0.2.8 claims liar.ptr.example.com, whose A record points elsewhere.
    assert (await _host(server, "192.0.2.8", "ptr.example.com")).result == "fail"


async def test_ten_lookup_limit(server: LoopbackDNSServer) -> None:
    # l1 has 10 includes below it (l1 -> l11): exactly the limit.
    assert (await _host(server, "192.0.2.1", "l1.chain.example.com")).result == "pass"
    # l0 needs 11.
    over = await _host(server, "192.0.2.1", "l0.chain.example.com")
    assert over.result == "permerror"
    assert "lookup limit" in over.reason


async def test_void_lookup_limit(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.1", "void2.example.com")).result == "pass"
    third = await _host(server, "192.0.2.1", "void.example.com")
    assert (third.result, third.reason) == ("permerror", "void lookup limit reached")


async def test_errors(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.1", "two.example.com")).result == "permerror"
    assert (await _host(server, "192.0.2.1", "syntax.example.com")).result == "permerror"
    assert (await _host(server, "192.0.2.1", "broken-inc.example.com")).result == "temperror"
    assert (await _host(server, "192.0.2.1", "broken.example.com")).result == "temperror"


async def test_timeout_is_temperror(server: LoopbackDNSServer) -> None:
    resolver = server.resolver(timeout=0.3)
    for domain in ("slow.example.com", "slow-inc.example.com"):
        result = await spf.check_host("192.0.2.1", domain, f"a@{domain}", resolver=resolver)
        assert result.result == "temperror"


async def test_large_record_set_over_tcp(server: LoopbackDNSServer) -> None:
    assert (await _host(server, "192.0.2.1", "big.example.com")).result == "pass"
    assert ("big.example.com.", "TXT", "tcp") in server.queries


async def test_check_picks_identity(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    mail = await spf.check("192.0.2.55", "helo.example.net", "user@example.com", resolver)
    assert (mail.result, mail.identity, mail.domain, mail.sender) == (
        "pass",
        "mailfrom",
        "example.com",
        "user@example.com",
    )
    # RFC 7208 2.4: null reverse-path -> postmaster@<HELO>, checked against the HELO's policy.
    for null in ("", "<>"):
        helo = await spf.check("192.0.2.25", "helo.example.net", null, resolver)
        assert (helo.result, helo.identity, helo.domain, helo.sender) == (
            "pass",
            "helo",
            "helo.example.net",
            "postmaster@helo.example.net",
        )
    bad = await spf.check("192.0.2.26", "helo.example.net", "", resolver)
    assert bad.result == "fail"
    literal = await spf.check("192.0.2.25", "[192.0.2.25]", "", resolver)
    assert (literal.result, literal.identity) == ("none", "helo")


async def test_check_helo_separately(server: LoopbackDNSServer) -> None:
    result = await spf.check_helo("192.0.2.25", "helo.example.net", server.resolver())
    assert (result.result, result.identity) == ("pass", "helo")


async def test_sender_without_local_part_is_postmaster(server: LoopbackDNSServer) -> None:
    result = await spf.check_host(
        "192.0.2.9", "strict.example.com", "strict.example.com", resolver=server.resolver()
    )
    assert result.sender == "postmaster@strict.example.com"
    assert "(postmaster at strict.example.com)" in result.explanation


async def test_invalid_client_ip_is_an_error(server: LoopbackDNSServer) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        await spf.check_host(
            "not-an-ip", "example.com", "a@example.com", resolver=server.resolver()
        )
