"""The DNS layer (smtpx.authres._dns) against a real DNS server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from smtpx.authres import _dns
from tests.authres.dnsserver import DNSServerFactory, LoopbackDNSServer

ZONE = {
    "example.com": [
        ("TXT", '"v=spf1 " "ip4:192.0.2.0/24 " "-all"'),
        ("TXT", '"other record"'),
        ("A", "192.0.2.1"),
        ("A", "192.0.2.2"),
        ("AAAA", "2001:db8::1"),
        ("MX", "20 mx2.example.com."),
        ("MX", "10 mx1.example.com"),
        ("MX", "30 ."),
    ],
    "alias.example.com.": [("CNAME", "example.com.")],
    "dangling.example.com": [("CNAME", "nowhere.example.com.")],
    "big.example.com": [("TXT", f'"{i:02d}{"x" * 200}"') for i in range(10)],
    "utf8.example.com": [("TXT", '"caf\\195\\169 \\255"')],
    "1.2.0.192.in-addr.arpa": [("PTR", "example.com."), ("PTR", "other.example.net.")],
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa": [
        ("PTR", "v6.example.com.")
    ],
}


@pytest.fixture
def server(dns_server: DNSServerFactory) -> LoopbackDNSServer:
    return dns_server(
        ZONE, timeout_names=["slow.example.com"], servfail_names=["broken.example.com"]
    )


async def test_txt_joins_strings_of_each_record(server: LoopbackDNSServer) -> None:
    records = await _dns.lookup_txt(server.resolver(), "example.com")
    assert sorted(records) == ["other record", "v=spf1 ip4:192.0.2.0/24 -all"]


async def test_names_are_case_insensitive_and_dot_optional(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    upper = await _dns.lookup_a(resolver, "EXAMPLE.Com.")
    assert sorted(upper) == sorted(await _dns.lookup_a(resolver, "example.com"))


async def test_txt_decodes_utf8_and_replaces_invalid_bytes(server: LoopbackDNSServer) -> None:
    assert await _dns.lookup_txt(server.resolver(), "utf8.example.com") == ["café \ufffd"]


async def test_large_answer_falls_back_to_tcp(server: LoopbackDNSServer) -> None:
    records = await _dns.lookup_txt(server.resolver(), "big.example.com")
    assert sorted(records) == [f"{i:02d}{'x' * 200}" for i in range(10)]
    transports = [t for name, rtype, t in server.queries if name == "big.example.com."]
    assert transports == ["udp", "tcp"]


async def test_a_aaaa_and_cname_chase(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    assert sorted(await _dns.lookup_a(resolver, "example.com")) == ["192.0.2.1", "192.0.2.2"]
    assert await _dns.lookup_aaaa(resolver, "example.com") == ["2001:db8::1"]
    assert sorted(await _dns.lookup_a(resolver, "alias.example.com")) == [
        "192.0.2.1",
        "192.0.2.2",
    ]
    assert await _dns.lookup_cname(resolver, "alias.example.com") == ["example.com"]


async def test_mx_sorted_by_preference_null_mx_is_empty_string(
    server: LoopbackDNSServer,
) -> None:
    hosts = await _dns.lookup_mx(server.resolver(), "example.com")
    assert hosts == ["mx1.example.com", "mx2.example.com", ""]


async def test_ptr_ipv4_and_ipv6(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    assert sorted(await _dns.lookup_ptr(resolver, "192.0.2.1")) == [
        "example.com",
        "other.example.net",
    ]
    assert await _dns.lookup_ptr(resolver, "2001:db8::1") == ["v6.example.com"]
    assert await _dns.lookup_ptr(resolver, "192.0.2.99") == []
    with pytest.raises(_dns.DNSPermError):
        await _dns.lookup_ptr(resolver, "not-an-ip")


@pytest.mark.parametrize(
    ("name", "lookup"),
    [
        ("nx.example.com", _dns.lookup_txt),  # NXDOMAIN
        ("big.example.com", _dns.lookup_mx),  # NODATA
        ("dangling.example.com", _dns.lookup_a),  # CNAME to a name that does not exist
        ("utf8.example.com", _dns.lookup_aaaa),  # NODATA
    ],
)
async def test_void_lookups_are_empty_lists(
    server: LoopbackDNSServer, name: str, lookup: _dns.Lookup
) -> None:
    assert await lookup(server.resolver(), name) == []


async def test_timeout_is_temp_error(server: LoopbackDNSServer) -> None:
    with pytest.raises(_dns.DNSTempError, match="timeout"):
        await _dns.lookup_txt(server.resolver(timeout=0.3), "slow.example.com")


async def test_servfail_is_temp_error(server: LoopbackDNSServer) -> None:
    with pytest.raises(_dns.DNSTempError):
        await _dns.lookup_a(server.resolver(), "broken.example.com")


@pytest.mark.parametrize(
    "name", ["a..example.com", "x" * 64 + ".example.com", ".".join(["abcdefghi"] * 30)]
)
async def test_invalid_names_are_perm_errors(server: LoopbackDNSServer, name: str) -> None:
    with pytest.raises(_dns.DNSPermError):
        await _dns.lookup_txt(server.resolver(), name)
    assert server.queries == []  # never sent


async def test_nothing_listening_is_temp_error() -> None:
    # A server that was started and stopped: its port is now closed (ICMP unreachable or silence).
    with LoopbackDNSServer() as gone:
        resolver = gone.resolver(timeout=0.3)
    with pytest.raises(_dns.DNSTempError):
        await _dns.lookup_txt(resolver, "example.com")


async def test_set_zone_replaces_records_while_running(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    assert await _dns.lookup_a(resolver, "new.example.com") == []
    server.set_zone({"new.example.com": [("A", "198.51.100.7")]})
    assert await _dns.lookup_a(resolver, "new.example.com") == ["198.51.100.7"]
    assert await _dns.lookup_a(resolver, "example.com") == []


def test_resolver_at_points_at_one_server(server: LoopbackDNSServer) -> None:
    resolver = _dns.resolver_at(server.host, server.port, timeout=1.0)
    assert resolver.nameservers == [server.host]
    assert asyncio.run(_dns.lookup_a(resolver, "example.com")) != []


async def test_many_concurrent_lookups(server: LoopbackDNSServer) -> None:
    resolver = server.resolver()
    results = await asyncio.gather(*(_dns.lookup_a(resolver, "example.com") for _ in range(50)))
    assert all(sorted(r) == ["192.0.2.1", "192.0.2.2"] for r in results)


async def test_server_can_restart() -> None:
    server = LoopbackDNSServer({"example.com": [("A", "192.0.2.1")]})
    for _ in range(2):
        with server:
            assert await _dns.lookup_a(server.resolver(), "example.com") == ["192.0.2.1"]
        assert server.port == 0
