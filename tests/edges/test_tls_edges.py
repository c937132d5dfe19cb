"""TLS: STARTTLS (RFC 3207), implicit TLS, require_tls and what the envelope learns."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import Callable

import pytest

from smtpx import Server
from smtpx.middleware import add_received_header
from tests.edges.edgeutil import TLSMaterial, connect, wait_until
from tests.server.serverthread import ServerThread

MSG = b"Subject: tls\r\nFrom: a@b.example\r\n\r\nhello over TLS\r\n"
MakeServer = Callable[..., ServerThread]


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def test_starttls_with_smtplib_gives_esmtps_and_tls_details(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(tls=tls_material.server_context(), middlewares=[add_received_header()])
    with srv.smtp() as client:
        client.ehlo()
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=tls_material.client_context())
        assert code == 220
        client.ehlo()
        assert not client.has_extn("starttls")  # RFC 3207 4.2: not offered again
        assert client.sendmail("a@b.example", ["r@x.example"], MSG) == {}
    (env,) = srv.received
    assert env.tls is not None
    assert env.tls.version.startswith("TLSv1.")
    assert env.tls.cipher and env.tls.bits >= 128
    assert env.tls.peer_cert is None  # the client showed no certificate
    assert env.data.startswith(b"Received: from client.test ([127.0.0.1])")
    assert b" with ESMTPS " in env.data.split(b"\r\n\r\n")[0]
    assert env.helo == "client.test" and env.esmtp


def test_client_certificate_reaches_the_envelope(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(tls=tls_material.server_context(client_certs=True))
    with srv.smtp() as client:
        client.starttls(context=tls_material.client_context(with_cert=True))
        client.sendmail("a@b.example", ["r@x.example"], MSG)
    (env,) = srv.received
    assert env.tls is not None and env.tls.peer_cert is not None
    assert ("DNS", "client.test") in env.tls.peer_cert["subjectAltName"]


def test_smtp_ssl_implicit_tls(make_server: MakeServer, tls_material: TLSMaterial) -> None:
    srv = make_server(
        tls=tls_material.server_context(),
        tls_always_on=True,
        middlewares=[add_received_header()],
    )
    with smtplib.SMTP_SSL(
        srv.host, srv.port, context=tls_material.client_context(), timeout=10
    ) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        assert not client.has_extn("starttls")
        # Already encrypted: STARTTLS is not available on this port.
        assert client.docmd("STARTTLS")[0] in (502, 503)
        assert client.sendmail("a@b.example", ["r@x.example"], MSG) == {}
    (env,) = srv.received
    assert env.tls is not None and env.tls.version.startswith("TLSv1.")
    assert b" with ESMTPS " in env.data


def test_swaks_tls(make_server: MakeServer, tls_material: TLSMaterial) -> None:
    swaks = shutil.which("swaks")
    assert swaks is not None, "swaks is not installed (apt-get install swaks)"
    srv = make_server(tls=tls_material.server_context(), middlewares=[add_received_header()])
    result = subprocess.run(
        [
            swaks,
            "--server",
            f"{srv.host}:{srv.port}",
            "--helo",
            "swaks.test",
            "--tls",
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.com",
            "--header",
            "Subject: swaks tls",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in result.stdout
    assert "<~  250 2.0.0 Message accepted" in result.stdout  # "~" marks encrypted lines
    (env,) = srv.received
    assert env.tls is not None and env.helo == "swaks.test"
    assert b" with ESMTPS " in env.data


def test_plaintext_pipelined_after_starttls_is_discarded(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    # CVE-2011-0411 / CVE-2024-34083: the injected MAIL must never run.
    srv = make_server(tls=tls_material.server_context())
    with connect(srv.port) as c:
        assert c.reply().startswith(b"220 ")
        assert c.cmd(b"EHLO client.test\r\n").startswith(b"250")
        c.send(b"STARTTLS\r\nMAIL FROM:<x@y>\r\n")  # one write
        assert c.reply().startswith(b"220 2.0.0")
        assert c.pending(0.3) == b""  # no plaintext reply to the injected MAIL
        c.starttls(tls_material.client_context())
        # The session started over: EHLO is required again ...
        assert c.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"503 5.5.1")
        ehlo = c.cmd(b"EHLO client.test\r\n")
        assert ehlo.startswith(b"250") and b"STARTTLS" not in ehlo
        # ... and no transaction is open, so MAIL is not "nested": the injection never ran.
        assert c.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
        assert c.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"250")
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        assert c.cmd(b"Subject: x\r\n\r\nbody\r\n.\r\n").startswith(b"250")
        assert c.cmd(b"QUIT\r\n").startswith(b"221")
    (env,) = srv.received
    assert env.mail_from is not None and env.mail_from.address == "a@b.example"


def test_starttls_argument_and_repeat(make_server: MakeServer, tls_material: TLSMaterial) -> None:
    srv = make_server(tls=tls_material.server_context())
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert c.cmd(b"STARTTLS now\r\n").startswith(b"501 5.5.4")
        assert c.cmd(b"STARTTLS\r\n").startswith(b"220 ")
        c.starttls(tls_material.client_context())
        c.cmd(b"EHLO client.test\r\n")
        assert c.cmd(b"STARTTLS\r\n").startswith(b"503 5.5.1")
        assert c.cmd(b"NOOP\r\n").startswith(b"250")  # no nested handshake ate anything


def test_starttls_without_tls_context_is_not_implemented(make_server: MakeServer) -> None:
    srv = make_server()
    with connect(srv.port) as c:
        c.reply()
        assert c.cmd(b"STARTTLS\r\n").startswith(b"502")


def test_failed_handshake_closes_only_that_connection(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(tls=tls_material.server_context(), timeout=5)
    with srv.smtp() as bystander:
        bystander.ehlo()
        assert wait_until(lambda: active(srv) == 1)
        # Garbage instead of a ClientHello.
        with connect(srv.port) as bad:
            bad.reply()
            assert bad.cmd(b"STARTTLS\r\n").startswith(b"220")
            bad.send(b"this is not a TLS record\r\n" * 4)
            assert bad.eof()
        # A client that leaves in the middle of the handshake.
        with connect(srv.port) as quitter:
            quitter.reply()
            assert quitter.cmd(b"STARTTLS\r\n").startswith(b"220")
            quitter.send(b"\x16\x03\x01\x02\x00\x01")
        # A client whose certificate check fails (it does not trust our CA).
        with connect(srv.port) as distrustful:
            distrustful.reply()
            assert distrustful.cmd(b"STARTTLS\r\n").startswith(b"220")
            with pytest.raises(ssl.SSLCertVerificationError):
                distrustful.starttls(ssl.create_default_context())
        # Every failed connection is gone from the count; the bystander is unharmed.
        assert wait_until(lambda: active(srv) == 1)
        assert bystander.sendmail("a@b.example", ["r@x.example"], MSG) == {}
    assert len(srv.received) == 1
    assert wait_until(lambda: active(srv) == 0)


def test_starttls_handshake_is_bounded_by_timeout(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(tls=tls_material.server_context(), timeout=1)
    with connect(srv.port) as c:
        c.reply()
        assert c.cmd(b"STARTTLS\r\n").startswith(b"220")
        started = time.monotonic()
        assert c.eof()  # we never send a ClientHello
        print(f"STARTTLS handshake cut off after {time.monotonic() - started:.2f}s")
    assert wait_until(lambda: active(srv) == 0)


def test_tls_always_on_handshake_comes_first_and_is_bounded(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(tls=tls_material.server_context(), tls_always_on=True, timeout=1)
    # A silent client hears nothing in plaintext and is dropped after the timeout.
    with connect(srv.port) as silent:
        assert silent.pending(0.3) == b""
        started = time.monotonic()
        assert silent.eof()
        print(f"implicit TLS handshake cut off after {time.monotonic() - started:.2f}s")
        assert not silent.buf.startswith(b"220")
    # A plaintext SMTP client never gets a plaintext greeting.
    with connect(srv.port) as plain:
        plain.send(b"EHLO client.test\r\n")
        assert plain.eof()
        assert not plain.buf.startswith(b"220")
    assert wait_until(lambda: active(srv) == 0)


def test_tls_options_need_a_context() -> None:
    with pytest.raises(ValueError, match="tls_always_on needs a tls context"):
        Server(tls_always_on=True)
    with pytest.raises(ValueError, match="require_tls needs a tls context"):
        Server(require_tls=True)


def test_require_tls(make_server: MakeServer, tls_material: TLSMaterial) -> None:
    srv = make_server(tls=tls_material.server_context(), require_tls=True)
    with srv.smtp() as client:
        client.ehlo()
        code, text = client.mail("a@b.example")
        assert (code, text[:5]) == (530, b"5.7.0")
        client.starttls(context=tls_material.client_context())
        client.ehlo()
        assert client.sendmail("a@b.example", ["r@x.example"], MSG) == {}
    (env,) = srv.received
    assert env.tls is not None


def test_two_messages_over_one_tls_session(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    # Go TestTLSMultiple: STARTTLS, a message, RSET, a second message, QUIT.
    srv = make_server(tls=tls_material.server_context())
    second = b"Subject: Test Email 2\r\n\r\nsecond\r\n"
    with srv.smtp() as client:
        client.starttls(context=tls_material.client_context())
        client.sendmail("sender@example.com", ["recipient@example.com"], MSG)
        client.rset()
        client.sendmail("sender-2@example.com", ["recipient-2@example.com"], second)
    first_env, second_env = srv.received
    assert [str(e.mail_from) for e in srv.received] == [
        "<sender@example.com>",
        "<sender-2@example.com>",
    ]
    assert [e.rcpt_to[0].address for e in srv.received] == [
        "recipient@example.com",
        "recipient-2@example.com",
    ]
    assert (first_env.data, second_env.data) == (MSG, second)
    # Unlike the Go package, TLS and the HELO name survive the first transaction.
    assert second_env.tls is not None and second_env.helo == "client.test"
