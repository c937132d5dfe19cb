"""`smtpx serve --auth-file/--auth-required/--auth-insecure/--accept-domain` in a subprocess."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtpx.auth import hash_password
from tests.server.test_cli import ENV, serve

SWAKS = shutil.which("swaks")
PASSWORD = "Tr0ub4dor&3-unique"


def users(path: Path, *names: str) -> Path:
    path.write_text("".join(f"{n}:{hash_password(PASSWORD, ln=10)}\n" for n in names))
    return path


def run_swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None, "swaks is not installed (apt-get install swaks)"
    return subprocess.run(
        [SWAKS, "--server", f"127.0.0.1:{port}", "--helo", "swaks.test", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_auth_file_without_tls_or_insecure_is_a_one_line_error(tmp_path: Path) -> None:
    auth = users(tmp_path / "users", "alice")
    result = subprocess.run(
        [sys.executable, "-m", "smtpx", "serve", "--auth-file", str(auth)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == "smtpx: --auth-file needs --tls-cert/--tls-key, or --auth-insecure\n"


def test_secrets_never_reach_the_log_at_debug(tmp_path: Path) -> None:
    auth = users(tmp_path / "users", "alice")
    flags = ["--auth-file", str(auth), "--auth-insecure", "--auth-required"]
    with serve(tmp_path / "maildir", *flags, "--log-level", "DEBUG") as (port, served):
        common = ["--from", "alice@example.org", "--to", "b@example.org"]
        for mech in ("PLAIN", "LOGIN"):
            ok = run_swaks(port, *common, "--auth", mech, "--auth-user", "alice",
                           "--auth-password", PASSWORD)  # fmt: skip
            assert ok.returncode == 0, ok.stdout + ok.stderr
            bad = run_swaks(port, *common, "--auth", mech, "--auth-user", "alice",
                            "--auth-password", PASSWORD + "x")  # fmt: skip
            assert "535 5.7.8" in bad.stdout
        no_auth = run_swaks(port, *common)
        assert "530 5.7.0" in no_auth.stdout
    log = served.stderr
    assert "AUTH is offered without TLS" in log  # --auth-insecure warns
    assert "authenticated as 'alice'" in log
    secrets = [PASSWORD, PASSWORD + "x"]
    for secret in list(secrets):
        secrets.append(base64.b64encode(secret.encode()).decode())
        secrets.append(base64.b64encode(b"\0alice\0" + secret.encode()).decode())
        secrets.append(base64.b64encode(b"alice\0alice\0" + secret.encode()).decode())
    for secret in secrets:
        assert secret not in log
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 2


def test_auth_file_is_reloaded_on_sighup(tmp_path: Path) -> None:
    auth = users(tmp_path / "users", "alice")
    with serve(tmp_path / "maildir", "--auth-file", str(auth), "--auth-insecure") as (port, served):
        with (
            smtplib.SMTP("127.0.0.1", port, timeout=10) as client,
            pytest.raises(smtplib.SMTPAuthenticationError),
        ):
            client.login("carol", PASSWORD)
        users(auth, "alice", "carol")
        pid = _server_pid(port)
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                try:
                    assert client.login("carol", PASSWORD)[0] == 235
                    break
                except smtplib.SMTPAuthenticationError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
        auth.write_text("carol:not-a-hash\n")
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.login("carol", PASSWORD)[0] == 235  # a bad file keeps the old users
    assert "auth file reloaded: 2 users" in served.stderr
    assert "auth file not reloaded" in served.stderr


def _server_pid(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split("pid=")[1].split(",")[0])


def test_accept_domain(tmp_path: Path) -> None:
    flags = ["--accept-domain", "Example.org", "--accept-domain", "example.net"]
    with (
        serve(tmp_path / "maildir", *flags) as (port, _),
        smtplib.SMTP("127.0.0.1", port, timeout=10) as client,
    ):
        client.ehlo()
        client.mail("a@elsewhere.example")
        assert client.rcpt("b@EXAMPLE.ORG")[0] == 250
        assert client.rcpt("b@example.net")[0] == 250
        assert client.rcpt("b@sub.example.org") == (550, b"5.7.1 Recipient domain not allowed")
        assert client.rcpt("b@example.com")[0] == 550
        assert client.rcpt("b@example.org.evil.test")[0] == 550
        assert client.rcpt("<postmaster>")[0] == 250
        assert client.data(b"Subject: t\r\n\r\nhi\r\n")[0] == 250
