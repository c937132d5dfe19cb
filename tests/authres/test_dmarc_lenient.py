"""DMARC records with one bad optional tag keep their policy (RFC 7489 6.3; issue 9 item 21)."""

from __future__ import annotations

import dataclasses

import pytest

from smtpx.authres import dmarc
from smtpx.authres.dmarc import Record
from tests.authres.dnsserver import DNSServerFactory
from tests.scaling import assert_linear

BASE = "v=DMARC1; p=reject; "


@pytest.mark.parametrize(
    ("tail", "expected", "discarded"),
    [
        ("pct=150", Record("reject"), ("pct=150",)),
        ("pct=-1", Record("reject"), ("pct=-1",)),
        ("pct=²", Record("reject"), ("pct=²",)),
        ("pct=" + "9" * 5000, Record("reject"), ("pct=" + "9" * 5000,)),
        ("adkim=x", Record("reject"), ("adkim=x",)),
        ("aspf=relaxed; adkim=s", Record("reject", dkim_alignment="s"), ("aspf=relaxed",)),
        ("ri=abc", Record("reject"), ("ri=abc",)),
        ("ri=0", Record("reject"), ("ri=0",)),
        ("rf=iodef", Record("reject"), ("rf=iodef",)),
        ("rf=afrf:iodef", Record("reject"), ("rf=iodef",)),
        ("fo=2", Record("reject"), ("fo=2",)),
        ("fo=1:x:d", Record("reject", failure_options=("1", "d")), ("fo=x",)),
        ("rua=not a uri", Record("reject"), ("rua=not a uri",)),
        (
            "rua=mailto:a@example.com,junk",
            Record("reject", report_uri_aggregate=("mailto:a@example.com",)),
            ("rua=junk",),
        ),
        ("ruf=!", Record("reject"), ("ruf=!",)),
        ("garbage", Record("reject"), ("garbage",)),
        ("pct=20; pct=150", Record("reject", percent=20), ("pct=150",)),
        # Good tags still count beside a bad one.
        (
            "pct=150; sp=none; adkim=s; ri=3600",
            Record("reject", subdomain_policy="none", dkim_alignment="s", report_interval=3600),
            ("pct=150",),
        ),
    ],
)
def test_a_bad_optional_tag_takes_its_default(
    tail: str, expected: Record, discarded: tuple[str, ...]
) -> None:
    record = dmarc.parse_record(BASE + tail)
    assert record.discarded == discarded
    assert record == dataclasses.replace(expected, discarded=discarded)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=DMARC1; pct=50", "missing a 'p' parameter"),
        ("v=DMARC1; p=rejectt", "invalid policy 'rejectt' for parameter 'p'"),
        ("v=DMARC1; p=reject; sp=maybe", "invalid policy 'maybe' for parameter 'sp'"),
        ("v=DMARC1; p=reject; p=none", "duplicate parameter 'p'"),
    ],
)
def test_the_policy_itself_is_still_required(text: str, message: str) -> None:
    with pytest.raises(dmarc.DMARCRecordError, match=message):
        dmarc.parse_record(text)


async def test_reject_domain_with_a_typo_keeps_its_protection(
    dns_server: DNSServerFactory,
) -> None:
    server = dns_server(
        {"_dmarc.bank.test": [("TXT", '"v=DMARC1; p=reject; pct=150; adkim=x; rua=oops"')]}
    )
    ev = await dmarc.evaluate("bank.test", resolver=server.resolver(2.0), rand=lambda: 0.99)
    assert (ev.result, ev.policy, ev.disposition) == ("fail", "reject", "reject")
    assert ev.record is not None and ev.record.percent is None


def test_record_parser_is_linear() -> None:
    # Long URIs, long bad fo= entries and long unknown tags: every branch of the one pass.
    def record(n: int) -> str:
        uris = ",".join(f"mailto:{'r' * 100}{i}@example.com" for i in range(n))
        junk = "; ".join(f"x{i}={'y' * 100}" for i in range(n))
        bad = ":".join(["1", "q" * 50] * n)
        return f"{BASE}rua={uris}; fo={bad}; {junk}"

    assert_linear(record, dmarc.parse_record, n=2_000, repeats=9)
