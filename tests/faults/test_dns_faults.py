"""DNS failures during authres, through the real CLI and a real loopback DNS server.

Timeouts, SERVFAIL and a nameserver that is not there at all: every check that could not
get an answer is ``temperror`` (RFC 7208 2.6.6, RFC 6376 6.1.2, RFC 7489 6.6.3), the message
is still accepted and stored once, and other clients are served while the lookups wait.
``tests/authres/test_middleware_server.py::test_dns_timeout_gives_temperror`` covers a DKIM
key timeout in-process; here every lookup fails, in ``smtpx serve --authres``.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smtpx.authres import dkim, parse
from tests.authres.dnsserver import DNSServerFactory
from tests.faults.cli import CLI

SENDER = "alice@broken.test"
NAMES = ["broken.test", "_dmarc.broken.test", "sel._domainkey.broken.test"]


@pytest.fixture(scope="module")
def private_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signed_message(private_key: bytes, subject: str) -> bytes:
    plain = (
        f"From: Alice <{SENDER}>\r\nTo: bob@mx.test\r\nSubject: {subject}\r\n\r\nbody\r\n"
    ).encode()
    return dkim.sign(plain, domain="broken.test", selector="sel", private_key=private_key) + plain


def results_of(stored: bytes) -> dict[str, list[str]]:
    message = email.message_from_bytes(stored, policy=email.policy.compat32)
    (field,) = [str(v) for v in message.get_all("Authentication-Results", [])]
    ident, results = parse(field.replace("\r\n", ""))
    assert ident == "mx.test"
    out: dict[str, list[str]] = {}
    for r in results:
        out.setdefault(r.method_name(), []).append(r.value)
    return out


def send_while_probing(port: int, message: bytes) -> tuple[dict[str, tuple[int, bytes]], list[int]]:
    """Send ``message``; meanwhile another connection sends NOOPs (their codes returned)."""
    done = threading.Event()
    noops: list[int] = []

    def probe() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as other:
            while not done.is_set():
                noops.append(other.noop()[0])
                done.wait(0.1)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as client:
            refused = client.sendmail(SENDER, ["bob@mx.test"], message)
    finally:
        done.set()
        thread.join(15)
    return refused, noops


@pytest.mark.parametrize("failure", ["servfail", "timeout"])
def test_failed_lookups_are_temperror_and_the_message_is_stored(
    tmp_path: Path, dns_server: DNSServerFactory, private_key: bytes, failure: str
) -> None:
    dns = dns_server(
        {},
        servfail_names=NAMES if failure == "servfail" else (),
        timeout_names=NAMES if failure == "timeout" else (),
    )
    message = signed_message(private_key, failure)
    with CLI(tmp_path, "--authres", "--dns-server", f"127.0.0.1:{dns.port}") as cli:
        refused, noops = send_while_probing(cli.port, message)
        cli.terminate()
        assert cli.wait() == 0, cli.stderr
    assert refused == {}  # accepted: 250
    assert noops and set(noops) == {250}  # the other client was answered all along
    (stored,) = cli.stored()
    assert stored.endswith(message)
    assert results_of(stored) == {
        "spf": ["temperror"],
        "dkim": ["temperror"],
        "dmarc": ["temperror"],
    }
    asked = {name.rstrip(".") for name, _, _ in dns.queries}
    assert set(NAMES) <= asked  # every check really asked, and got no answer
    assert "Traceback" not in cli.stderr


def test_no_nameserver_at_all(tmp_path: Path, private_key: bytes) -> None:
    # A port where nothing listens: every UDP query gets ICMP port unreachable.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
    message = signed_message(private_key, "no dns")
    with CLI(tmp_path, "--authres", "--dns-server", f"127.0.0.1:{port}") as cli:
        refused, _ = send_while_probing(cli.port, message)
        cli.terminate()
        assert cli.wait() == 0, cli.stderr
    assert refused == {}
    (stored,) = cli.stored()
    assert results_of(stored) == {
        "spf": ["temperror"],
        "dkim": ["temperror"],
        "dmarc": ["temperror"],
    }
    assert "Traceback" not in cli.stderr
