"""authentication_results inside a real smtpx server, against real DNS servers on loopback.

Most cases use Debian's dnsmasq (started here on a free port, TXT records given with
``--txt-record``); the DNS-timeout and event-loop cases use the loopback server of
``tests/authres/dnsserver.py`` because dnsmasq cannot be told to stay silent for one name.
Keys are generated per test module; the smtplib client runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import smtplib
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import authres as pypi_authres  # test-only reader; untyped (see [tool.mypy.overrides])
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from smtpx import Server
from smtpx.authres import _dns, dkim, parse
from smtpx.authres._middleware import authentication_results
from smtpx.envelope import Envelope
from smtpx.responses import Response
from tests.authres.dnsserver import DNSServerFactory

DNSMASQ = "/usr/sbin/dnsmasq"
HOSTNAME = "mx.test"


@dataclass
class Keys:
    rsa_pem: bytes
    rsa_record: str
    ed_seed: bytes
    ed_record: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ed_key = ed25519.Ed25519PrivateKey.generate()
    raw = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return Keys(
        rsa_pem=rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        rsa_record=f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}",
        ed_seed=ed_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        ed_record=f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}",
    )


def _free_port() -> int:
    # dnsmasq binds UDP and TCP on the same port; take one free for both.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def _txt_arg(name: str, text: str) -> str:
    # One TXT record, split in strings of at most 255 octets (RFC 1035 3.3.14). On the command
    # line dnsmasq takes quotes literally and splits strings at commas (none in our records).
    assert "," not in text
    chunks = ",".join(text[i : i + 200] for i in range(0, len(text), 200))
    return f"--txt-record={name},{chunks}"


@pytest.fixture(scope="module")
def dnsmasq(keys: Keys) -> Iterator[int]:
    records = {
        "example.com": "v=spf1 ip4:127.0.0.1 -all",
        "_dmarc.example.com": "v=DMARC1; p=reject",
        "rsa._domainkey.example.com": keys.rsa_record,
        "ed._domainkey.example.com": keys.ed_record,
        "fail.example": "v=spf1 -all",
        "softfail.example": "v=spf1 ~all",
        "reject.example": "v=spf1 -all",
        "_dmarc.reject.example": "v=DMARC1; p=reject",
    }
    port = _free_port()
    argv = [
        DNSMASQ,
        "--no-daemon",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=",
        # Answer NXDOMAIN/NODATA for unknown names in these zones instead of REFUSED.
        "--local=/example.com/fail.example/softfail.example/reject.example/",
        *(_txt_arg(name, text) for name, text in records.items()),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        resolver = _dns.resolver_at("127.0.0.1", port, timeout=0.5)
        for _ in range(50):  # bounded wait until dnsmasq answers
            try:
                if asyncio.run(_dns.lookup_txt(resolver, "example.com")):
                    break
            except _dns.DNSTempError:
                pass
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited: {err}")
        else:
            raise RuntimeError("dnsmasq did not answer")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Delivery:
    code: int
    text: bytes
    data: bytes | None


async def _deliver(
    middleware_resolver_port: tuple[str, int],
    messages: Sequence[tuple[str, bytes]],
    *,
    reject_dmarc: bool = True,
    timeout: float = 10.0,
    spooled: list[bool] | None = None,
    spool_threshold: int = 4 << 20,
) -> list[Delivery]:
    host, port = middleware_resolver_port
    received: list[bytes] = []

    async def handler(envelope: Envelope) -> Response | None:
        received.append(envelope.data)
        if spooled is not None:
            spooled.append(envelope.spooled)
        return None

    server = Server(
        hostname=HOSTNAME,
        addr="127.0.0.1:0",
        handler=handler,
        middlewares=[
            authentication_results(
                HOSTNAME,
                resolver=_dns.resolver_at(host, port, timeout=timeout),
                reject_dmarc=reject_dmarc,
                timeout=timeout,
            )
        ],
        spool_threshold=spool_threshold,
    )
    await server.start()

    def send_all() -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            for sender, data in messages:
                try:
                    client.sendmail(sender, ["bob@mx.test"], data)
                    out.append((250, b""))
                except smtplib.SMTPDataError as exc:
                    out.append((exc.smtp_code, _as_bytes(exc.smtp_error)))
        return out

    try:
        replies = await asyncio.to_thread(send_all)
    finally:
        await server.shutdown(5)
    stored = iter(received)
    return [Delivery(c, t, next(stored) if c == 250 else None) for c, t in replies]


def auth_results(data: bytes | None) -> list[str]:
    assert data is not None
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return [str(v) for v in message.get_all("Authentication-Results", [])]


def results_of(data: bytes | None) -> dict[str, list[str]]:
    [field] = auth_results(data)
    ident, results = parse(field)
    assert ident == HOSTNAME
    out: dict[str, list[str]] = {}
    for r in results:
        out.setdefault(r.method_name(), []).append(r.value)
    return out


BODY = b"Hi Bob,\r\n\r\nthe game starts at eight.\r\n"


def mail(sender: str, extra: bytes = b"") -> bytes:
    return (
        f"From: Alice <{sender}>\r\nTo: bob@mx.test\r\nSubject: dinner\r\n".encode()
        + extra
        + b"\r\n"
        + BODY
    )


def test_dkim_spf_dmarc_through_a_real_server(dnsmasq: int, keys: Keys) -> None:
    plain = mail("alice@example.com")
    rsa_sig = dkim.sign(plain, domain="example.com", selector="rsa", private_key=keys.rsa_pem)
    ed_sig = dkim.sign(
        plain,
        domain="example.com",
        selector="ed",
        private_key=keys.ed_seed,
        algorithm="ed25519-sha256",
    )
    unknown = dkim.sign(plain, domain="example.com", selector="nosuch", private_key=keys.rsa_pem)
    forged_ar = b"Authentication-Results: mx.test; dkim=pass header.d=example.com\r\n"
    messages = [
        ("alice@example.com", rsa_sig + plain),  # 0 DKIM rsa pass
        ("alice@example.com", ed_sig + plain),  # 1 DKIM ed25519 pass
        ("alice@example.com", rsa_sig + plain.replace(b"eight", b"nine")),  # 2 tampered
        ("alice@example.com", unknown + plain),  # 3 unknown selector
        ("x@fail.example", mail("x@fail.example")),  # 4 SPF fail, no DMARC record
        ("x@softfail.example", mail("x@softfail.example")),  # 5 SPF softfail
        ("x@reject.example", mail("x@reject.example")),  # 6 DMARC fail, p=reject
        ("x@fail.example", forged_ar + mail("x@fail.example")),  # 7 forged own A-R
    ]
    got = asyncio.run(_deliver(("127.0.0.1", dnsmasq), messages))

    assert results_of(got[0].data) == {"spf": ["pass"], "dkim": ["pass"], "dmarc": ["pass"]}
    assert results_of(got[1].data) == {"spf": ["pass"], "dkim": ["pass"], "dmarc": ["pass"]}
    # Tampered body: DKIM fails, DMARC still passes through aligned SPF.
    assert results_of(got[2].data) == {"spf": ["pass"], "dkim": ["fail"], "dmarc": ["pass"]}
    assert results_of(got[3].data) == {"spf": ["pass"], "dkim": ["permerror"], "dmarc": ["pass"]}
    assert results_of(got[4].data) == {"spf": ["fail"], "dkim": ["none"], "dmarc": ["none"]}
    assert results_of(got[5].data)["spf"] == ["softfail"]
    assert (got[6].code, got[6].text) == (
        550,
        b"5.7.1 Message rejected: DMARC policy of reject.example says reject",
    )
    fields = auth_results(got[7].data)
    assert len(fields) == 1 and "dkim=none" in fields[0]

    # The independent PyPI parser reads what smtpx wrote.
    header = pypi_authres.AuthenticationResultsHeader.parse(
        "Authentication-Results: " + auth_results(got[0].data)[0].replace("\r\n", "")
    )
    assert header.authserv_id == HOSTNAME
    assert [(r.method, r.result) for r in header.results] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("dmarc", "pass"),
    ]
    dkim_props = {(p.type, p.name): p.value for p in header.results[1].properties}
    assert dkim_props[("header", "d")] == "example.com"
    assert dkim_props[("header", "s")] == "rsa"
    dmarc_props = {(p.type, p.name): p.value for p in header.results[2].properties}
    assert dmarc_props == {("header", "from"): "example.com"}


def test_a_spooled_message_is_checked_from_its_file(dnsmasq: int, keys: Keys) -> None:
    # 600 KiB of body with white space at line ends, spooled from the first byte (threshold
    # 0): DKIM hashes it from the file, both canonicalisations, and own A-R fields go.
    body = b"".join(b"line %d \t of a long body  \r\n" % i for i in range(20000))
    big = mail("alice@example.com").replace(BODY, body)
    sigs = [
        dkim.sign(
            big,
            domain="example.com",
            selector="rsa",
            private_key=keys.rsa_pem,
            canonicalization=(c, c),
        )
        for c in ("relaxed", "simple")
    ]
    forged_ar = b"Authentication-Results: mx.test; dkim=pass header.d=example.com\r\n"
    messages = [
        ("alice@example.com", sigs[0] + big),
        ("alice@example.com", sigs[1] + big),
        ("alice@example.com", sigs[0] + big.replace(b"line 19999", b"line 99999")),
        ("alice@example.com", forged_ar + sigs[0] + big),
    ]
    spooled: list[bool] = []
    got = asyncio.run(
        _deliver(("127.0.0.1", dnsmasq), messages, spooled=spooled, spool_threshold=0)
    )
    assert spooled == [True] * 4
    assert results_of(got[0].data) == {"spf": ["pass"], "dkim": ["pass"], "dmarc": ["pass"]}
    assert results_of(got[1].data) == {"spf": ["pass"], "dkim": ["pass"], "dmarc": ["pass"]}
    assert results_of(got[2].data)["dkim"] == ["fail"]
    assert results_of(got[3].data) == {"spf": ["pass"], "dkim": ["pass"], "dmarc": ["pass"]}
    assert got[3].data is not None
    assert b"dkim=pass header.d=example.com\r\n" not in got[3].data
    assert got[3].data.endswith(sigs[0] + big)


def test_dns_timeout_gives_temperror(dns_server: DNSServerFactory, keys: Keys) -> None:
    server = dns_server(
        {
            "example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
            "_dmarc.example.com": [("TXT", '"v=DMARC1; p=none"')],
        },
        timeout_names=["slow._domainkey.example.com"],
    )
    plain = mail("alice@example.com")
    signed = dkim.sign(plain, domain="example.com", selector="slow", private_key=keys.rsa_pem)
    [got] = asyncio.run(
        _deliver((server.host, server.port), [("alice@example.com", signed + plain)], timeout=0.5)
    )
    assert results_of(got.data) == {"spf": ["pass"], "dkim": ["temperror"], "dmarc": ["pass"]}


def test_checks_do_not_block_other_connections(dns_server: DNSServerFactory, keys: Keys) -> None:
    slow_key = "slow._domainkey.example.com"
    dns = dns_server(
        {"example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')]}, timeout_names=[slow_key]
    )
    plain = mail("alice@example.com")
    signed = dkim.sign(plain, domain="example.com", selector="slow", private_key=keys.rsa_pem)

    async def scenario() -> tuple[list[int], bool, list[bytes]]:
        received: list[bytes] = []

        async def handler(envelope: Envelope) -> Response | None:
            received.append(envelope.data)
            return None

        server = Server(
            hostname=HOSTNAME,
            addr="127.0.0.1:0",
            handler=handler,
            middlewares=[
                authentication_results(
                    HOSTNAME, resolver=_dns.resolver_at(dns.host, dns.port, timeout=3.0)
                )
            ],
        )
        await server.start()
        done = threading.Event()

        def slow_sender() -> None:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
                client.sendmail("alice@example.com", ["bob@mx.test"], signed + plain)
            done.set()

        def noops() -> tuple[list[int], bool]:
            sender = threading.Thread(target=slow_sender)
            sender.start()
            # Wait (bounded) until the check is stuck on the unanswered key query.
            for _ in range(200):
                if any(q[0].rstrip(".").lower() == slow_key for q in dns.queries):
                    break
                threading.Event().wait(0.05)
            with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as other:
                codes = [other.noop()[0] for _ in range(5)]
            still_waiting = not done.is_set()
            sender.join(60)
            return codes, still_waiting

        try:
            codes, still_waiting = await asyncio.to_thread(noops)
        finally:
            await server.shutdown(5)
        return codes, still_waiting, received

    codes, still_waiting, received = asyncio.run(scenario())
    assert codes == [250] * 5
    # The NOOPs were answered while the message's DKIM key lookup was still pending.
    assert still_waiting
    assert results_of(received[0])["dkim"] == ["temperror"]


def _as_bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode()
