"""The author domains DMARC evaluates: every From mailbox, linear and capped (issue 9 items 6, 7).

The server cases run a real smtpx server with ``authentication_results(reject_dmarc=True)``,
its resolver pointed at the loopback DNS server, and deliver with smtplib over loopback.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time

import pytest

from smtpx import Server
from smtpx.authres import _dns, dmarc, parse
from smtpx.authres._middleware import authentication_results
from smtpx.envelope import Envelope
from smtpx.responses import Response
from tests.authres.dnsserver import DNSServerFactory, LoopbackDNSServer
from tests.authres.test_middleware_server import _deliver, auth_results
from tests.scaling import assert_linear

HOSTNAME = "mx.test"
ZONE = {
    # The attacker's own domain: SPF passes for loopback, no DMARC record.
    "evil.test": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
    "bank.test": [("TXT", '"v=spf1 -all"')],
    "_dmarc.bank.test": [("TXT", '"v=DMARC1; p=reject"')],
    "shop.test": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
    "_dmarc.shop.test": [("TXT", '"v=DMARC1; p=quarantine"')],
}


def message(*from_fields: bytes) -> bytes:
    head = b"".join(b"From: " + f + b"\r\n" for f in from_fields)
    return head + b"To: bob@mx.test\r\nSubject: wire transfer\r\n\r\nPay now.\r\n"


def dmarc_results(data: bytes | None) -> list[tuple[str, str]]:
    [field] = auth_results(data)
    _, results = parse(field)
    return [(r.value, getattr(r, "header_from", "")) for r in results if r.method == "dmarc"]


# ---------------------------------------------------------------------------------------------
# author_domains


@pytest.mark.parametrize(
    ("from_fields", "domains", "refuse"),
    [
        ([b"Alice <alice@Bank.Test.>"], ("bank.test",), False),
        ([b'"Doe, John" <john@bank.test>'], ("bank.test",), False),
        ([b"ceo@bank.test, x@evil.test"], ("bank.test", "evil.test"), False),
        ([b"x@evil.test, ceo@bank.test, y@evil.test"], ("evil.test", "bank.test"), False),
        ([b"board: ceo@bank.test, x@evil.test;"], ("bank.test", "evil.test"), False),
        ([b"(a (nested) comment) ceo@bank.test (\\) x)"], ("bank.test",), False),
        ([b'"odd@local\\"part"@bank.test'], ("bank.test",), False),
        ([b"<@relay.test,@other.test:ceo@bank.test>"], ("bank.test",), False),
        ([b"undisclosed-recipients:;"], (), False),
        ([b"ceo@bank.test", b"x@evil.test"], (), True),
        ([b"x@evil.test", b"x@evil.test"], (), True),
        ([b"ceo@bank.test <x@evil.test>"], (), True),
        ([b"Bank <ceo@bank.test> x@evil.test"], (), True),
        ([b"ceo@bank.test (unterminated"], (), True),
        ([b"a: b: ceo@bank.test;;"], (), True),
        ([b"a:" * 2000 + b"ceo@bank.test" + b";" * 2000], (), True),  # nested groups
        ([b"(" * 3000 + b"x" + b")" * 3000 + b" ceo@bank.test"], ("bank.test",), False),
        ([b"a:" * 5000 + b"ceo@bank.test" + b";" * 5000], (), True),  # over the length cap
        ([b", ".join(b"u@d%d.test" % i for i in range(11))], (), True),  # too many domains
    ],
)
def test_author_domains(from_fields: list[bytes], domains: tuple[str, ...], refuse: bool) -> None:
    authors = dmarc.author_domains(message(*from_fields))
    assert (authors.domains, authors.refuse) == (domains, refuse)
    assert bool(authors.error) == (not domains)


def test_header_from_domain_keeps_its_contract() -> None:
    assert dmarc.header_from_domain(message(b"a@x.example,\r\n b@x.example")) == "x.example"
    assert dmarc.header_from_domain(message(b"a@x.example, b@y.example")) == ""
    assert dmarc.header_from_domain(message(b"a:" * 5000 + b"a@x.example" + b";" * 5000)) == ""
    assert dmarc.header_from_domain(b"Subject: no from\r\n\r\nFrom: a@x.example\r\n") == ""


def test_author_parsing_is_linear() -> None:
    # Many mailboxes with deep comments, read without the length cap: the parser itself.
    def field(n: int) -> bytes:
        mailbox = b"(" * 20 + b"c" + b")" * 20 + b' "Name, Jr." <u@bank.test>'
        return message(b", ".join([mailbox] * (n // 64)))

    assert_linear(field, lambda m: dmarc.author_domains(m, max_length=1 << 30), n=200_000)


# ---------------------------------------------------------------------------------------------
# through a real server


def test_reject_dmarc_applies_to_every_author(dns_server: DNSServerFactory) -> None:
    server = dns_server(ZONE)
    sends = [
        ("x@evil.test", message(b"x@evil.test")),  # 0 control: evil.test has no policy
        ("x@evil.test", message(b"ceo@bank.test, x@evil.test")),  # 1 two authors
        ("x@evil.test", message(b"x@evil.test, ceo@bank.test")),  # 2 bank second
        ("x@evil.test", message(b"ceo@bank.test", b"x@evil.test")),  # 3 two From fields
        ("x@evil.test", message(b"x@evil.test", b"x@evil.test")),  # 4 two, same domain
        ("x@evil.test", message(b"board: ceo@bank.test;")),  # 5 a group
        ("x@evil.test", message(b"Bank <ceo@bank.test> x@evil.test")),  # 6 unparsable
        ("x@shop.test", message(b"x@shop.test, ceo@bank.test")),  # 7 shop passes, bank fails
    ]
    got = asyncio.run(_deliver((server.host, server.port), sends, timeout=5.0))
    assert got[0].code == 250
    assert dmarc_results(got[0].data) == [("none", "evil.test")]
    rejected = b"5.7.1 Message rejected: DMARC policy of bank.test says reject"
    assert [(g.code, g.text) for g in got[1:3]] == [(550, rejected)] * 2
    for several in got[3:5]:
        assert several.code == 550
        assert several.text.startswith(b"5.7.1 Message rejected: several RFC5322.From fields")
    assert (got[5].code, got[5].text) == (550, rejected)
    assert (got[6].code, got[6].text[:40]) == (550, b"5.7.1 Message rejected: malformed RFC532")
    assert (got[7].code, got[7].text) == (550, rejected)


def test_each_author_gets_its_own_dmarc_result(dns_server: DNSServerFactory) -> None:
    server = dns_server(ZONE)
    [got] = asyncio.run(
        _deliver(
            (server.host, server.port),
            [("x@shop.test", message(b"x@shop.test, ceo@bank.test"))],
            reject_dmarc=False,
        )
    )
    assert got.code == 250
    assert dmarc_results(got.data) == [("pass", "shop.test"), ("fail", "bank.test")]


@pytest.mark.parametrize(
    "from_field",
    [
        b"a:" * 2000 + b"x@evil.test" + b";" * 2000,  # nested groups, under the length cap
        b"a:" * 5000 + b"x@evil.test" + b";" * 5000,  # the 5,000: over the cap
        b"(" * 4000 + b"x@evil.test" + b")" * 4000,
        b"(" * 5000 + b"x@evil.test" + b")" * 5000,
    ],
)
def test_hostile_from_is_permerror_not_451(dns_server: DNSServerFactory, from_field: bytes) -> None:
    # Before the fix: RecursionError in the middleware, 451 4.3.0, retried forever.
    server = dns_server(ZONE)
    [got] = asyncio.run(
        _deliver(
            (server.host, server.port),
            [("x@evil.test", message(from_field))],
            reject_dmarc=False,
        )
    )
    assert got.code == 250
    [(value, _)] = dmarc_results(got.data)
    assert value == "permerror"


def test_huge_from_does_not_stall_other_connections(dns_server: DNSServerFactory) -> None:
    """Another client's NOOPs are answered while a message with a 2 MB From is processed.

    The message's SPF lookup goes unanswered for ``hold`` seconds, so its processing lasts at
    least that long after the parse. Before the fix, parsing the From field blocked the event
    loop (2.6 s in one run on a loaded 2-core machine) and one NOOP waited that long: more than
    a quarter of the message's processing time. Now the field is refused at the length cap and
    every NOOP is quick. The check is a ratio of two times in one run.
    """
    hold = 2.0
    dns = dns_server(ZONE, timeout_names=["slow.test"])
    addresses = b", ".join(b"a%d@evil.test" % i for i in range(2_000_000 // 16))
    data = message(addresses)
    stall, processing, reply = asyncio.run(_stall_during(dns, data, hold))
    assert reply[0] == 250, reply
    assert processing >= hold
    assert stall < processing / 4, (stall, processing)


async def _stall_during(
    dns: LoopbackDNSServer, data: bytes, hold: float
) -> tuple[float, float, tuple[int, bytes]]:
    async def handler(envelope: Envelope) -> Response | None:
        return None

    server = Server(
        hostname=HOSTNAME,
        addr="127.0.0.1:0",
        handler=handler,
        max_size=8 * 1024 * 1024,
        max_junk_commands=0,  # the probe below sends hundreds of NOOPs
        middlewares=[
            authentication_results(
                HOSTNAME, resolver=_dns.resolver_at(dns.host, dns.port, timeout=hold), timeout=30
            )
        ],
    )
    await server.start()
    done = threading.Event()
    out: dict[str, object] = {}

    def hostile() -> None:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
            client.ehlo("client.slow.test")
            client.mail("x@slow.test")
            client.rcpt("bob@mx.test")
            client.putcmd("data")
            assert client.getreply()[0] == 354
            client.send(data + b".\r\n")
            sent = time.perf_counter()
            out["reply"] = client.getreply()
            out["processing"] = time.perf_counter() - sent
        done.set()

    def noops() -> float:
        worst = 0.0
        with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as other:
            other.noop()
            sender = threading.Thread(target=hostile)
            sender.start()
            while not done.wait(0.01):
                start = time.perf_counter()
                assert other.noop()[0] == 250
                worst = max(worst, time.perf_counter() - start)
            sender.join(60)
        return worst

    try:
        worst = await asyncio.to_thread(noops)
    finally:
        await server.shutdown(5)
    reply = out["reply"]
    processing = out["processing"]
    assert isinstance(reply, tuple) and isinstance(processing, float)
    return worst, processing, reply
