"""DMARC (RFC 7489): records, discovery through a real loopback DNS server, alignment, policy."""

from __future__ import annotations

import pytest

from smtpx.authres import DMARCResult, dmarc
from smtpx.authres.dkim import Verification
from smtpx.authres.dmarc import DMARCRecordError, Record, aligned, organizational_domain
from tests.authres.dnsserver import DNSServerFactory, Zone


def rec(text: str) -> tuple[str, str]:
    return ("TXT", f'"{text}"')


def test_parse_full_record() -> None:
    record = dmarc.parse_record(
        "v=DMARC1; p=Reject; sp=quarantine; adkim=s; aspf=r; pct=50; fo=0:1:d:s; rf=afrf;"
        " ri=3600; rua=mailto:agg@example.com, mailto:agg@example.net!10m;"
        " ruf=mailto:forensic@example.com; x-unknown=ignored"
    )
    assert record == Record(
        policy="reject",
        subdomain_policy="quarantine",
        dkim_alignment="s",
        spf_alignment="r",
        percent=50,
        failure_options=("0", "1", "d", "s"),
        report_format=("afrf",),
        report_interval=3600,
        report_uri_aggregate=("mailto:agg@example.com", "mailto:agg@example.net!10m"),
        report_uri_failure=("mailto:forensic@example.com",),
    )


def test_parse_defaults() -> None:
    assert dmarc.parse_record("v=DMARC1; p=none") == Record(policy="none")
    assert dmarc.parse_record("v=DMARC1;p=none;").percent is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p=none; v=DMARC1", "must start with v=DMARC1"),  # Go accepted v anywhere
        ("v=DMARC2; p=none", "must start with v=DMARC1"),
        ("v=DMARC1", "missing a 'p' parameter"),
        ("v=DMARC1; p=bogus", "invalid policy 'bogus' for parameter 'p'"),
        ("v=DMARC1; p=none; sp=maybe", "invalid policy 'maybe' for parameter 'sp'"),
        ("v=DMARC1; p=none; p=reject", "duplicate parameter 'p'"),
    ],
)
# Bad optional tags no longer void the record (RFC 7489 6.3): see test_dmarc_lenient.py.
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(DMARCRecordError, match=message.replace("(", r"\(").replace(".", r"\.")):
        dmarc.parse_record(text)


def test_organizational_domain_uses_the_public_suffix_list() -> None:
    assert organizational_domain("mail.Example.COM.") == "example.com"
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("co.uk") == "co.uk"


@pytest.mark.parametrize(
    ("identifier", "header_from", "mode", "expected"),
    [
        ("example.com", "example.com", "s", True),
        ("EXAMPLE.com", "example.com.", "s", True),
        ("mail.example.com", "example.com", "s", False),
        ("mail.example.com", "example.com", "r", True),
        ("example.com", "news.example.com", "r", True),
        # The Go suffix match let these align:
        ("evilexample.com", "example.com", "r", False),
        ("example.com", "evilexample.com", "r", False),
        ("example.co.uk", "other.co.uk", "r", False),
        ("", "example.com", "r", False),
    ],
)
def test_alignment(identifier: str, header_from: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, header_from, mode) is expected


def test_header_from_domain() -> None:
    assert dmarc.header_from_domain(b'From: "Joe, Jr." <joe@Mail.Example.com>\r\n\r\nx') == (
        "mail.example.com"
    )
    assert dmarc.header_from_domain(b"From: a@x.example,\r\n b@x.example\r\n\r\n") == "x.example"
    assert dmarc.header_from_domain(b"From: a@x.example, b@y.example\r\n\r\n") == ""
    assert dmarc.header_from_domain(b"From: a@x.example\r\nFrom: b@x.example\r\n\r\n") == ""
    assert dmarc.header_from_domain(b"Subject: no from\r\n\r\nFrom: a@x.example\r\n") == ""


def passed(domain: str) -> Verification:
    return Verification(domain=domain, selector="s", result="pass")


ZONE: Zone = {
    "_dmarc.example.com": [
        rec("v=spf1 -all"),  # a non-DMARC TXT beside the record is ignored
        rec("v=DMARC1; p=reject; sp=quarantine; adkim=r; aspf=s"),
    ],
    "_dmarc.strict.example": [rec("v=DMARC1; p=quarantine; adkim=s; aspf=s")],
    "_dmarc.twice.example": [rec("v=DMARC1; p=reject"), rec("v=DMARC1; p=none")],
    "_dmarc.broken.example": [rec("v=DMARC1; p=bogus")],
    "_dmarc.broken-rua.example": [rec("v=DMARC1; p=bogus; rua=mailto:r@broken-rua.example")],
    "_dmarc.half.example": [rec("v=DMARC1; p=reject; pct=50")],
    "_dmarc.none.example": [rec("v=DMARC1; p=none")],
}


async def test_pass_via_relaxed_dkim_and_strict_spf(dns_server: DNSServerFactory) -> None:
    resolver = dns_server(ZONE).resolver()
    ev = await dmarc.evaluate("example.com", dkim=[passed("mail.example.com")], resolver=resolver)
    assert (ev.result, ev.dkim_aligned, ev.spf_aligned) == ("pass", True, False)
    assert ev.policy_domain == "example.com"
    assert ev.to_result() == DMARCResult("pass", "aligned DKIM passed", "example.com")
    # aspf=s: a subdomain's SPF pass does not align.
    ev = await dmarc.evaluate(
        "example.com", spf_result="pass", spf_domain="bounce.example.com", resolver=resolver
    )
    assert (ev.result, ev.disposition) == ("fail", "reject")
    ev = await dmarc.evaluate(
        "example.com", spf_result="pass", spf_domain="example.com", resolver=resolver
    )
    assert (ev.result, ev.spf_aligned) == ("pass", True)


async def test_evil_lookalike_does_not_pass(dns_server: DNSServerFactory) -> None:
    resolver = dns_server(ZONE).resolver()
    ev = await dmarc.evaluate(
        "example.com",
        spf_result="pass",
        spf_domain="evilexample.com",
        dkim=[passed("evilexample.com")],
        resolver=resolver,
    )
    assert (ev.result, ev.disposition) == ("fail", "reject")


async def test_failed_dkim_does_not_count(dns_server: DNSServerFactory) -> None:
    failing = Verification(domain="example.com", selector="s", result="fail")
    ev = await dmarc.evaluate("example.com", dkim=[failing], resolver=dns_server(ZONE).resolver())
    assert ev.result == "fail"


async def test_subdomain_uses_org_record_and_sp(dns_server: DNSServerFactory) -> None:
    ev = await dmarc.evaluate("news.example.com", resolver=dns_server(ZONE).resolver())
    assert (ev.result, ev.policy_domain, ev.policy, ev.disposition) == (
        "fail",
        "example.com",
        "quarantine",
        "quarantine",
    )
    assert ev.header_from == "news.example.com"


async def test_strict_dkim_alignment(dns_server: DNSServerFactory) -> None:
    resolver = dns_server(ZONE).resolver()
    ev = await dmarc.evaluate(
        "strict.example", dkim=[passed("a.strict.example")], resolver=resolver
    )
    assert ev.result == "fail"
    ev = await dmarc.evaluate("strict.example", dkim=[passed("Strict.Example")], resolver=resolver)
    assert ev.result == "pass"


async def test_no_record_multiple_records_and_errors(dns_server: DNSServerFactory) -> None:
    server = dns_server(
        ZONE, timeout_names=["_dmarc.slow.example"], servfail_names=["_dmarc.fail.example"]
    )
    resolver = server.resolver(timeout=0.3)
    cases = {
        "nothing.example": ("none", "no DMARC policy"),
        "twice.example": ("none", "no DMARC policy"),
        "broken.example": (
            "permerror",
            "invalid DMARC record: invalid policy 'bogus' for parameter 'p'",
        ),
        "slow.example": ("temperror", None),
        "fail.example": ("temperror", None),
    }
    for domain, (result, reason) in cases.items():
        ev = await dmarc.evaluate(domain, resolver=resolver)
        assert ev.result == result, domain
        if reason is not None:
            assert ev.reason == reason
    assert (await dmarc.evaluate("", resolver=resolver)).result == "permerror"


async def test_bad_policy_with_rua_acts_as_p_none(dns_server: DNSServerFactory) -> None:
    ev = await dmarc.evaluate("broken-rua.example", resolver=dns_server(ZONE).resolver())
    assert (ev.result, ev.policy, ev.disposition) == ("fail", "none", "none")


async def test_pct_sampling_uses_the_injected_random_source(dns_server: DNSServerFactory) -> None:
    resolver = dns_server(ZONE).resolver()
    sampled = await dmarc.evaluate("half.example", resolver=resolver, rand=lambda: 0.49)
    assert (sampled.result, sampled.disposition) == ("fail", "reject")
    spared = await dmarc.evaluate("half.example", resolver=resolver, rand=lambda: 0.5)
    assert (spared.result, spared.policy, spared.disposition) == ("fail", "reject", "quarantine")
    none = await dmarc.evaluate("none.example", resolver=resolver)
    assert (none.result, none.disposition) == ("fail", "none")
