"""The authentication_results middleware called directly, with a real Envelope and DNS server."""

from __future__ import annotations

import base64
import email
import email.policy

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from smtpx.address import Address
from smtpx.authres import (
    DKIMResult,
    DMARCResult,
    SPFResult,
    dkim,
    parse,
)
from smtpx.authres._middleware import authentication_results, remove_authentication_results
from smtpx.envelope import Envelope
from smtpx.responses import Response, new_response
from tests.authres.dnsserver import DNSServerFactory, Zone

MESSAGE = (
    b"Authentication-Results: mx.test; dkim=pass header.d=forged.example\r\n"
    b"Authentication-Results: other.example;\r\n  spf=pass smtp.mailfrom=a@example.com\r\n"
    b'AUTHENTICATION-RESULTS: "MX.TEST" 1; none\r\n'
    b"From: Alice <alice@example.com>\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"Authentication-Results: mx.test; this line is body text\r\n"
)


def test_remove_only_own_authserv_id_and_only_in_the_header() -> None:
    cleaned = remove_authentication_results(MESSAGE, "mx.test")
    assert cleaned == (
        b"Authentication-Results: other.example;\r\n  spf=pass smtp.mailfrom=a@example.com\r\n"
        b"From: Alice <alice@example.com>\r\n"
        b"Subject: hi\r\n"
        b"\r\n"
        b"Authentication-Results: mx.test; this line is body text\r\n"
    )
    assert remove_authentication_results(cleaned, "mx.test") is cleaned


def _ed_zone(key: ed25519.Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f'"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"'


def auth_results(data: bytes) -> list[str]:
    """The Authentication-Results field bodies of a message, read by the stdlib parser."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return [str(v) for v in message.get_all("Authentication-Results", [])]


ACCEPTED = new_response(250, "queued", "2.0.0")


async def test_header_written_and_forged_ones_removed(dns_server: DNSServerFactory) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    zone: Zone = {
        "example.com": [("TXT", '"v=spf1 ip4:192.0.2.0/24 -all"')],
        "_dmarc.example.com": [("TXT", '"v=DMARC1; p=reject"')],
        "ed._domainkey.example.com": [("TXT", _ed_zone(key))],
    }
    resolver = dns_server(zone).resolver()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    signature = dkim.sign(
        MESSAGE,
        domain="example.com",
        selector="ed",
        private_key=seed,
        algorithm="ed25519-sha256",
        header_keys=["From", "Subject"],
    )
    envelope = Envelope(
        remote_addr=("192.0.2.7", 4242),
        helo="client.example.com",
        mail_from=Address("alice@example.com"),
        rcpt_to=[Address("bob@mx.test")],
        data=signature + MESSAGE,
    )
    seen: list[bytes] = []

    async def next_(env: Envelope) -> Response | None:
        seen.append(env.data)
        return ACCEPTED

    response = await authentication_results("mx.test", resolver=resolver)(next_)(envelope)
    assert response == ACCEPTED
    [data] = seen
    fields = auth_results(data)
    assert len(fields) == 2  # ours on top, other.example's kept
    assert fields[1].startswith("other.example;")
    ident, results = parse(fields[0])
    assert ident == "mx.test"
    assert results == [
        SPFResult(
            "pass", results[0].reason, mail_from="alice@example.com", helo="client.example.com"
        ),
        DKIMResult(
            "pass",
            domain="example.com",
            identifier="@example.com",
            selector="ed",
            signature=results[1].signature if isinstance(results[1], DKIMResult) else "",
            algorithm="ed25519-sha256",
        ),
        DMARCResult("pass", "aligned SPF and DKIM passed", header_from="example.com"),
    ]


async def test_dmarc_reject_and_unsigned_mail(dns_server: DNSServerFactory) -> None:
    zone: Zone = {
        "example.com": [("TXT", '"v=spf1 -all"')],
        "_dmarc.example.com": [("TXT", '"v=DMARC1; p=reject"')],
    }
    resolver = dns_server(zone).resolver()
    calls: list[Envelope] = []

    async def next_(env: Envelope) -> Response | None:
        calls.append(env)
        return ACCEPTED

    def envelope() -> Envelope:
        return Envelope(
            remote_addr=("198.51.100.1", 25),
            helo="h.example",
            mail_from=Address("alice@example.com"),
            data=b"From: alice@example.com\r\n\r\nhi\r\n",
        )

    plain = authentication_results("mx.test", resolver=resolver)(next_)
    first = envelope()
    assert await plain(first) == ACCEPTED
    [field] = auth_results(first.data)
    _, results = parse(field)
    assert [(r.method_name(), r.value) for r in results] == [
        ("spf", "fail"),
        ("dkim", "none"),
        ("dmarc", "fail"),
    ]

    rejecting = authentication_results("mx.test", resolver=resolver, reject_dmarc=True)(next_)
    response = await rejecting(envelope())
    assert response is not None
    assert (response.code, response.enhanced) == (550, "5.7.1")
    assert "example.com" in response.text
    assert len(calls) == 1


async def test_deadline_turns_slow_checks_into_temperror(dns_server: DNSServerFactory) -> None:
    server = dns_server({}, timeout_names=["example.com", "_dmarc.example.com"])
    middleware = authentication_results("mx.test", resolver=server.resolver(timeout=5), timeout=0.3)
    env = Envelope(
        remote_addr=("2001:db8::1", 25),
        helo="h.example",
        mail_from=Address("alice@example.com"),
        data=b"From: alice@example.com\r\n\r\nhi\r\n",
    )

    async def next_(e: Envelope) -> Response | None:
        return None

    await middleware(next_)(env)
    [field] = auth_results(env.data)
    _, results = parse(field)
    assert [(r.method_name(), r.value) for r in results] == [
        ("spf", "temperror"),
        ("dkim", "none"),
        ("dmarc", "temperror"),
    ]
