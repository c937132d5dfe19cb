"""Interop with Debian's swaks, a real SMTP client (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess

from tests.server.serverthread import ServerThread

SWAKS = shutil.which("swaks")


def swaks(server: ServerThread, *args: str) -> subprocess.CompletedProcess[str]:
    assert SWAKS is not None, (
        "swaks is not installed: run .ci/install-peers (apt-get install swaks)"
    )
    return subprocess.run(
        [SWAKS, "--server", f"{server.host}:{server.port}", "--helo", "swaks.test", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_swaks_plain_message(server: ServerThread) -> None:
    result = swaks(
        server,
        "--from",
        "alice@example.com",
        "--to",
        "bob@example.com,carol@example.com",
        "--header",
        "Subject: swaks test",
        "--body",
        "Hello from swaks\n.leading dot\n",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (env,) = server.received
    assert env.mail_from is not None and env.mail_from.address == "alice@example.com"
    assert [r.address for r in env.rcpt_to] == ["bob@example.com", "carol@example.com"]
    assert env.helo == "swaks.test"
    assert b"Subject: swaks test\r\n" in env.data
    assert b"\r\n.leading dot\r\n" in env.data
    assert b"\n" not in env.data.replace(b"\r\n", b"")


def test_swaks_pipelining(server: ServerThread) -> None:
    result = swaks(server, "--pipeline", "--from", "a@example.com", "--to", "b@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PIPELINING" in result.stdout
    assert len(server.received) == 1


def test_swaks_sees_rejection(server: ServerThread) -> None:
    result = swaks(server, "--from", "a@example.com", "--to", "not-an-address")
    assert result.returncode != 0
    assert "501" in result.stdout
    assert server.received == []
