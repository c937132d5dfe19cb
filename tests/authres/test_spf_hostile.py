"""Hostile SPF records and senders: linear cost, documented caps, permerror (issue 9 item 2)."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpx.authres import spf
from tests.authres.dnsserver import DNSServerFactory, LoopbackDNSServer
from tests.scaling import assert_linear

# The regex spf.py used before issue 9, kept as the grammar's reference (RFC 7208 7.1 toplabel)
# for short inputs only: it backtracks quadratically on a long label that fails at its end.
_OLD_TOPLABEL = re.compile(
    r".*\.(?:[0-9A-Za-z]*[A-Za-z][0-9A-Za-z]*|[0-9A-Za-z]+-[0-9A-Za-z-]*[0-9A-Za-z])\.?\Z"
)


def _txt(text: str) -> str:
    """One TXT record in presentation format, cut into strings of 250 octets (RFC 1035 3.3.14)."""
    return " ".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))


def _terms_then_bad_label(n: int) -> str:
    """About ``n`` characters of valid terms, then an include whose n/2-long toplabel fails."""
    terms: list[str] = []
    size = 0
    while size < n:
        terms.append(f"a:h{len(terms)}.example.com/24")
        size += len(terms[-1]) + 1
    return "v=spf1 " + " ".join(terms) + " include:x." + "a" * (n // 2) + "!"


def _parse_or_permerror(record: str) -> None:
    with pytest.raises(spf._PermError):
        spf._parse_record(record)


def test_record_parser_is_linear_in_a_failing_toplabel() -> None:
    # Before the fix: 4,000- vs 8,000-octet label, ~0.25 s vs ~1 s (ratio ~4); after, ~5 ms of
    # valid terms and a permerror at the length cap.
    # Four parses per timing, so that each reading is well above the machine's noise.
    def four_parses(record: str) -> None:
        for _ in range(4):
            _parse_or_permerror(record)

    assert_linear(_terms_then_bad_label, four_parses, n=8_000)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1-.!%", max_size=12))
def test_toplabel_check_matches_the_rfc_grammar(text: str) -> None:
    assert spf._ends_in_toplabel(text) == bool(_OLD_TOPLABEL.match(text))


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("example.com", True),
        ("example.com.", True),
        ("x.1-2", True),
        ("x.123", False),  # a toplabel is not all digits
        ("x.-a", False),
        ("x.a-", False),
        ("x.a_b", False),
        ("com", False),
        ("example.com..", False),
        ("%{d}", True),
        ("%{d}.x", True),
        ("%{d}.", False),
        ("a" * 249 + ".com", True),  # 253 octets: the longest name
        ("a" * 249 + ".com.", True),
        ("a" * 250 + ".com", False),
    ],
)
def test_domain_spec_grammar_and_length_cap(spec: str, valid: bool) -> None:
    record = f"v=spf1 include:{spec} -all"
    if valid:
        spf._parse_record(record)
    else:
        _parse_or_permerror(record)


def test_huge_macro_digit_count_is_all_labels_not_an_exception() -> None:
    # int() refuses more than 4,300 digits (Python 3.11+); an unknown modifier must still parse.
    record = "v=spf1 x-junk=%{d" + "9" * 5000 + "} -all"
    assert spf._parse_record(record).mechanisms[0].name == "all"
    _parse_or_permerror("v=spf1 x-junk=%{d" + "0" * 5000 + "} -all")


async def _check(
    server: LoopbackDNSServer, record: str, sender: str = "a@evil.test"
) -> spf.SPFResult:
    server.set_zone({"evil.test": [("TXT", _txt(record))], "ok.test": [("A", "192.0.2.1")]})
    return await spf.check_host("192.0.2.1", "evil.test", sender, resolver=server.resolver(2.0))


def test_hostile_record_over_real_dns_is_permerror_at_linear_cost(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server()

    def run(record: str) -> None:
        result = asyncio.run(_check(server, record))
        assert result.result == "permerror", result

    # The record, fetched over TCP (too big for UDP). Before the fix: ~1 s vs ~4 s.
    assert_linear(lambda n: "v=spf1 include:x." + "a" * n + "!", run, n=8_000, repeats=3)


def test_record_length_cap_over_real_dns(dns_server: DNSServerFactory) -> None:
    server = dns_server()
    # A record of exactly MAX_RECORD_LENGTH characters is evaluated; one more is permerror.
    body = " ip4:192.0.2.1 -all"
    pad = "x-pad=" + "p" * (spf.MAX_RECORD_LENGTH - len("v=spf1 ") - len(body) - len("x-pad="))
    record = "v=spf1 " + pad + body
    assert len(record) == spf.MAX_RECORD_LENGTH
    assert asyncio.run(_check(server, record)).result == "pass"
    longer = asyncio.run(_check(server, record.replace("x-pad=", "x-pad=p")))
    assert longer.result == "permerror"
    assert str(spf.MAX_RECORD_LENGTH) in longer.reason


def test_long_expanded_name_is_cut_in_linear_time(dns_server: DNSServerFactory) -> None:
    # RFC 7208 4.8: %{l} of a sender with thousands of labels is cut to 253 octets from the left.
    # Before the fix every cut copied the rest of the name: ~0.2 s vs ~0.8 s.
    server = dns_server()

    def run(local: str) -> None:
        result = asyncio.run(
            _check(server, "v=spf1 exists:%{l}.ok.test -all", sender=local + "@evil.test")
        )
        assert result.result == "fail", result

    assert_linear(lambda n: "a." * n + "b", run, n=80_000, repeats=3)


def test_target_name_cut_keeps_rfc_semantics() -> None:
    name = ".".join(f"l{i:03d}" for i in range(100)) + ".example.com"
    cut = spf._target_name(name)
    assert len(cut) <= 253 and name.endswith("." + cut)
    assert len(cut) > 253 - 5  # only whole labels dropped, no more than needed
    assert spf._target_name("a" * 300) == "a" * 300  # no dot: nothing to drop
    assert spf._target_name("short.example.") == "short.example."
