"""SMTP AUTH (RFC 4954) over real loopback sockets: smtplib, swaks and raw bytes (issue 12)."""

from __future__ import annotations

import base64
import shutil
import smtplib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpx import Server
from smtpx.auth import AuthFile, AuthThrottle, FileAuthenticator, hash_password
from smtpx.authres import authentication_results
from smtpx.authres._dns import resolver_at
from smtpx.middleware import add_received_header
from tests.edges.edgeutil import TLSMaterial, free_port
from tests.server.serverthread import ServerThread

SWAKS = shutil.which("swaks")
PASSWORD = "s3cret-Pa55"


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "users"
    # ln=10: the cheapest allowed cost keeps the tests quick.
    lines = [f"{u}:{hash_password(PASSWORD, ln=10)}" for u in ("alice", "bob")]
    path.write_text("# users\n" + "\n".join(lines) + "\n")
    return path


@pytest.fixture
def authenticator(auth_file: Path) -> Iterator[FileAuthenticator]:
    auth = FileAuthenticator(AuthFile(auth_file))
    yield auth
    auth.close()


@pytest.fixture
def insecure(
    make_server: Callable[..., ServerThread], authenticator: FileAuthenticator
) -> Callable[..., ServerThread]:
    """A server offering AUTH without TLS (raw-byte tests)."""

    def factory(**options: Any) -> ServerThread:
        options.setdefault("auth_throttle", AuthThrottle(base_delay=0.0, max_delay=0.0))
        return make_server(authenticator=authenticator, auth_allow_insecure=True, **options)

    return factory


def tls_client(srv: ServerThread, tls: TLSMaterial) -> smtplib.SMTP:
    client = srv.smtp()
    client.starttls(context=tls.client_context())
    client.ehlo()
    return client


# ---------------------------------------------------------------- smtplib over STARTTLS
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtplib_login_over_starttls(
    make_server: Callable[..., ServerThread],
    authenticator: FileAuthenticator,
    tls: TLSMaterial,
    mechanism: str,
) -> None:
    srv = make_server(
        tls=tls.server_context(),
        authenticator=authenticator,
        auth_required=True,
        middlewares=[add_received_header()],
    )
    with srv.smtp() as plain:
        plain.ehlo()
        assert not plain.has_extn("auth")  # RFC 4954: not offered before TLS here
        assert plain.docmd("AUTH", "PLAIN")[0] == 538
        assert plain.mail("a@example.org") == (530, b"5.7.0 Authentication required")
    with tls_client(srv, tls) as client:
        assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        assert client.mail("a@example.org")[0] == 530
        client.user, client.password = "alice", PASSWORD
        auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        assert client.auth(mechanism, auth, initial_response_ok=mechanism == "PLAIN") == (
            235,
            b"2.7.0 Authentication successful",
        )
        assert client.docmd("AUTH", "PLAIN")[0] == 503  # twice
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: t\r\n\r\nhi\r\n")
    (envelope,) = srv.received
    assert envelope.authenticated == "alice"
    assert b"with ESMTPSA" in envelope.data


def test_smtplib_login_wrong_password(
    make_server: Callable[..., ServerThread], authenticator: FileAuthenticator, tls: TLSMaterial
) -> None:
    srv = make_server(
        tls=tls.server_context(),
        authenticator=authenticator,
        auth_throttle=AuthThrottle(max_per_connection=10, base_delay=0.0, max_delay=0.0),
    )
    with tls_client(srv, tls) as client:
        # smtplib tries PLAIN, then LOGIN: two failures per login().
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            client.login("alice", "wrong")
        assert info.value.smtp_code == 535
        assert info.value.smtp_error == b"5.7.8 Authentication credentials invalid"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mallory", PASSWORD)  # unknown user: the same answer


# ---------------------------------------------------------------- the replies, byte by byte
def greet(raw: Any) -> None:
    raw.reply()
    assert b"AUTH PLAIN LOGIN" in raw.cmd(b"EHLO client.test\r\n")


def test_auth_replies(insecure: Callable[..., ServerThread]) -> None:
    srv = insecure()
    good = b64(b"\0alice\0" + PASSWORD.encode())
    with srv.raw() as raw:
        greet(raw)
        assert raw.cmd(b"AUTH CRAM-MD5\r\n").startswith(b"504 5.5.4")
        assert raw.cmd(b"AUTH PLAIN not*base64\r\n").startswith(b"501 5.5.2")
        assert raw.cmd(b"AUTH PLAIN\r\n") == b"334 \r\n"
        assert raw.cmd(b"*\r\n").startswith(b"501 ")  # the client cancels
        assert raw.cmd(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
        assert raw.cmd(b"!!!\r\n").startswith(b"501 5.5.2")
        assert raw.cmd(b"AUTH PLAIN =\r\n").startswith(b"535 5.7.8")  # empty initial response
        assert raw.cmd(b"MAIL FROM:<a@example.org>\r\n").startswith(b"250")
        assert raw.cmd(b"AUTH PLAIN " + good + b"\r\n").startswith(b"503 5.5.1")  # transaction
        assert raw.cmd(b"RSET\r\n").startswith(b"250")
        assert raw.cmd(b"AUTH PLAIN " + good + b"\r\n").startswith(b"235 2.7.0")
        assert raw.cmd(b"AUTH PLAIN " + good + b"\r\n").startswith(b"503 5.5.1")


def test_login_with_initial_response_and_plain_authzid(
    insecure: Callable[..., ServerThread],
) -> None:
    srv = insecure()
    with srv.raw() as raw:
        greet(raw)
        # RFC 4616 2: an authzid other than the authcid is refused ...
        other = b64(b"bob\0alice\0" + PASSWORD.encode())
        assert raw.cmd(b"AUTH PLAIN " + other + b"\r\n").startswith(b"535 5.7.8")
        # ... one equal to it is fine. LOGIN's initial response is the user name.
        assert raw.cmd(b"AUTH LOGIN " + b64(b"alice") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
        assert raw.cmd(b64(PASSWORD.encode()) + b"\r\n").startswith(b"235")
    with srv.raw() as raw:
        greet(raw)
        same = b64(b"alice\0alice\0" + PASSWORD.encode())
        assert raw.cmd(b"AUTH PLAIN " + same + b"\r\n").startswith(b"235")


def test_sasl_line_up_to_12288_octets_and_no_longer(insecure: Callable[..., ServerThread]) -> None:
    srv = insecure()
    with srv.raw() as raw:
        greet(raw)
        # 12288 octets of base64 (9216 decoded): a valid line, wrong credentials.
        longest = b64(b"\0alice\0" + b"x" * (9216 - 7))
        assert len(longest) == 12288
        assert raw.cmd(b"AUTH PLAIN\r\n") == b"334 \r\n"
        assert raw.cmd(longest + b"\r\n").startswith(b"535 5.7.8")
        assert raw.cmd(b"AUTH PLAIN\r\n") == b"334 \r\n"
        assert raw.cmd(longest + b"QUJD\r\n").startswith(b"500 5.5.6")
        assert raw.cmd(b"NOOP\r\n").startswith(b"250")  # back in step
        # A command line is still limited to 1024 octets.
        assert raw.cmd(b"AUTH PLAIN " + longest + b"\r\n").startswith(b"500")


def test_auth_not_configured_is_502(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server()
    with srv.raw() as raw:
        raw.reply()
        assert b"AUTH" not in raw.cmd(b"EHLO client.test\r\n")
        assert raw.cmd(b"AUTH PLAIN\r\n").startswith(b"502")


def test_mail_auth_parameter_is_xtext_and_ignored_before_auth(
    insecure: Callable[..., ServerThread],
) -> None:
    srv = insecure(middlewares=[add_received_header()])
    good = b64(b"\0alice\0" + PASSWORD.encode())
    with srv.raw() as raw:
        greet(raw)
        assert raw.cmd(b"MAIL FROM:<a@example.org> AUTH=bad=xtext\r\n").startswith(b"501")
        assert raw.cmd(b"MAIL FROM:<a@example.org> AUTH=x+40example.org\r\n").startswith(b"250")
        raw.cmd(b"RCPT TO:<b@example.org>\r\n")
        raw.cmd(b"DATA\r\n")
        assert raw.cmd(b"hi\r\n.\r\n").startswith(b"250")
        assert raw.cmd(b"AUTH PLAIN " + good + b"\r\n").startswith(b"235")
        assert raw.cmd(b"MAIL FROM:<a@example.org> AUTH=x+40example.org\r\n").startswith(b"250")
        raw.cmd(b"RCPT TO:<b@example.org>\r\n")
        raw.cmd(b"DATA\r\n")
        assert raw.cmd(b"hi\r\n.\r\n").startswith(b"250")
    first, second = srv.received
    assert (first.authenticated, first.mail_auth) == (None, None)  # RFC 4954 5: AUTH=<>
    assert (second.authenticated, second.mail_auth) == ("alice", "x@example.org")
    assert b"with ESMTP " in first.data and b"with ESMTPA " in second.data  # RFC 3848


# ---------------------------------------------------------------- throttling
def test_failures_are_delayed_more_each_time_then_421(
    make_server: Callable[..., ServerThread], authenticator: FileAuthenticator
) -> None:
    srv = make_server(
        authenticator=authenticator,
        auth_allow_insecure=True,
        auth_throttle=AuthThrottle(base_delay=0.15, max_delay=1.0, max_per_address=100),
    )
    bad = b"AUTH PLAIN " + b64(b"\0alice\0wrong") + b"\r\n"
    with srv.raw() as raw, srv.raw() as other:
        greet(raw)
        other.reply()
        took = []
        for _ in range(2):
            start = time.monotonic()
            raw.send(bad)
            # The loop is not blocked: another client is answered during the delay.
            t_other = time.monotonic()
            assert other.cmd(b"NOOP\r\n").startswith(b"250")
            assert time.monotonic() - t_other < 0.1
            assert raw.reply().startswith(b"535 5.7.8")
            took.append(time.monotonic() - start)
        assert took[0] >= 0.15 and took[1] >= 0.3  # 1x, then 2x the base delay
        assert raw.cmd(bad).startswith(b"421 4.7.0")  # the third failure (default limit)
        assert raw.closed()


def test_failures_per_address_are_limited(
    insecure: Callable[..., ServerThread],
) -> None:
    srv = insecure(auth_throttle=AuthThrottle(max_per_address=2, base_delay=0.0, max_delay=0.0))
    bad = b"AUTH PLAIN " + b64(b"\0alice\0wrong") + b"\r\n"
    good = b"AUTH PLAIN " + b64(b"\0alice\0" + PASSWORD.encode()) + b"\r\n"
    with srv.raw() as raw:
        greet(raw)
        assert raw.cmd(bad).startswith(b"535")
    with srv.raw() as raw:
        greet(raw)
        assert raw.cmd(bad).startswith(b"421 4.7.0")  # the address's second failure
    with srv.raw() as raw:
        greet(raw)
        assert raw.cmd(good).startswith(b"421 4.7.0")  # even the right password now
        assert raw.closed()


# ---------------------------------------------------------------- authres
def test_authres_adds_auth_pass(
    make_server: Callable[..., ServerThread], authenticator: FileAuthenticator, tls: TLSMaterial
) -> None:
    dead_dns = resolver_at("127.0.0.1", free_port())
    srv = make_server(
        tls=tls.server_context(),
        authenticator=authenticator,
        middlewares=[authentication_results("mx.test", resolver=dead_dns, timeout=0.5)],
    )
    with tls_client(srv, tls) as client:
        client.login("bob", PASSWORD)
        client.sendmail("bob@example.org", ["c@example.org"], b"Subject: t\r\n\r\nhi\r\n")
    (envelope,) = srv.received
    header = envelope.data.split(b"\r\n\r\n")[0]
    assert b"auth=pass smtp.auth=bob" in header


# ---------------------------------------------------------------- swaks
def swaks(srv: ServerThread, *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None, "swaks is not installed (apt-get install swaks)"
    return subprocess.run(
        [SWAKS, "--server", f"{srv.host}:{srv.port}", "--helo", "swaks.test", "--tls", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_auth(
    make_server: Callable[..., ServerThread],
    authenticator: FileAuthenticator,
    tls: TLSMaterial,
    mechanism: str,
) -> None:
    srv = make_server(
        tls=tls.server_context(),
        authenticator=authenticator,
        auth_required=True,
        auth_throttle=AuthThrottle(base_delay=0.0, max_delay=0.0),
    )
    common = ["--from", "alice@example.org", "--to", "b@example.org", "--auth", mechanism]
    ok = swaks(srv, *common, "--auth-user", "alice", "--auth-password", PASSWORD)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "235 2.7.0" in ok.stdout
    bad = swaks(srv, *common, "--auth-user", "alice", "--auth-password", "nope")
    assert bad.returncode != 0
    assert "535 5.7.8" in bad.stdout
    unknown = swaks(srv, *common, "--auth-user", "nobody", "--auth-password", PASSWORD)
    assert "535 5.7.8" in unknown.stdout
    (envelope,) = srv.received
    assert envelope.authenticated == "alice"


def test_swaks_auth_refused_without_tls(
    make_server: Callable[..., ServerThread], authenticator: FileAuthenticator, tls: TLSMaterial
) -> None:
    srv = make_server(tls=tls.server_context(), authenticator=authenticator)
    assert SWAKS is not None
    result = subprocess.run(
        [
            SWAKS,
            "--server",
            f"{srv.host}:{srv.port}",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            PASSWORD,
            "--to",
            "b@example.org",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "did not advertise authentication" in result.stderr


def test_server_refuses_auth_without_tls_or_insecure(authenticator: FileAuthenticator) -> None:
    with pytest.raises(ValueError, match="TLS"):
        Server(authenticator=authenticator)
    with pytest.raises(ValueError, match="authenticator"):
        Server(auth_required=True)
