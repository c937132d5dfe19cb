"""The `smtpx serve` command: a Maildir server in a real subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpx
from smtpx import authres
from tests.authres.dnsserver import LoopbackDNSServer

# Run the smtpx these tests imported (the installed wheel under tox, the tree otherwise), from
# a folder where `python -m` cannot pick up the source tree by accident.
SMTPX_PATH = str(Path(smtpx.__file__).resolve().parents[1])
ENV = {**os.environ, "PYTHONPATH": SMTPX_PATH}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


class Served:
    """What a `smtpx serve` run left behind: its exit code and stderr."""

    returncode: int | None = None
    stderr = ""


@contextlib.contextmanager
def serve(maildir: Path, *flags: str) -> Iterator[tuple[int, Served]]:
    """Run `python -m smtpx serve` on a free port until the block ends, then SIGTERM it."""
    port = free_port()
    cmd = [sys.executable, "-m", "smtpx", "serve", "--addr", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*cmd, "--maildir", str(maildir), *flags],
        cwd=maildir.parent,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served()
    try:
        wait_for_port(port, proc)
        yield port, served
    finally:
        proc.send_signal(signal.SIGTERM)
        _, served.stderr = proc.communicate(timeout=20)
        served.returncode = proc.returncode


def test_version_names_implementation(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "smtpx", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=ENV,
    ).stdout
    assert out.startswith(f"smtpx {smtpx.__version__} ({smtpx.IMPLEMENTATION} implementation, ")


def test_serve_stores_maildir_and_stops_on_sigterm(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    msg = b"Subject: cli\r\nFrom: a@example.com\r\n\r\nstored body\r\n"
    with (
        serve(maildir, "--hostname", "sink.test") as (port, served),
        smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as client,
    ):
        client.sendmail("a@example.com", ["b@example.com"], msg)
        client.sendmail("a@example.com", ["c@example.com", "d@example.com"], msg)
    assert served.returncode == 0, served.stderr
    stderr = served.stderr
    files = sorted((maildir / "new").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    assert len(files) == 2 and os.listdir(maildir / "tmp") == []
    stored = files[0].read_bytes()
    assert stored.startswith(
        b"Return-Path: <a@example.com>\r\nReceived: from client.test ([127.0.0.1])"
    )
    assert b"by sink.test with ESMTP id " in stored
    assert stored.endswith(msg)
    # One log line per message on stderr.
    lines = [line for line in stderr.splitlines() if " code=250" in line]
    assert len(lines) == 2 and "from=a@example.com" in lines[0]


def test_serve_refuses_bad_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smtpx", "serve", "--addr", "nonsense"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_serve_with_authres_uses_the_given_dns_server(tmp_path: Path) -> None:
    zone = {"example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')]}
    maildir = tmp_path / "maildir"
    msg = b"Subject: ar\r\nFrom: a@example.com\r\n\r\nbody\r\n"
    with LoopbackDNSServer(zone) as dns:
        flags = ["--hostname", "mx.test", "--authres", "--dns-server", f"{dns.host}:{dns.port}"]
        with (
            serve(maildir, *flags) as (port, served),
            smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10) as c,
        ):
            c.sendmail("a@example.com", ["b@example.net"], msg)
    assert served.returncode == 0, served.stderr
    (stored,) = [p.read_bytes() for p in (maildir / "new").iterdir()]
    names = [
        line.split(b":", 1)[0]
        for line in stored.split(b"\r\n\r\n")[0].split(b"\r\n")
        if line and line[:1] not in b" \t"
    ]
    assert names[:3] == [b"Return-Path", b"Received", b"Authentication-Results"]
    header = stored.split(b"Authentication-Results: ", 1)[1].split(b"\r\nSubject:")[0].decode()
    authserv_id, results = authres.parse(header.replace("\r\n", ""))
    assert authserv_id == "mx.test"
    spf = [r for r in results if isinstance(r, authres.SPFResult)]
    assert spf and spf[0].value == "pass"


@pytest.mark.parametrize(("cache_flags", "asked"), [((), 1), (("--dns-cache", "0"), 2)])
def test_serve_with_authres_caches_dns_answers_per_ttl(
    tmp_path: Path, cache_flags: tuple[str, ...], asked: int
) -> None:
    # Issue 11: a repeated sender costs no lookups (the zone's TTL is 300 s); --dns-cache 0
    # asks every time.
    zone = {"example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')]}
    msg = b"Subject: ar\r\nFrom: a@example.com\r\n\r\nbody\r\n"
    with LoopbackDNSServer(zone) as dns:
        flags = ["--authres", "--dns-server", f"{dns.host}:{dns.port}", *cache_flags]
        with serve(tmp_path / "maildir", *flags) as (port, served):
            for _ in range(2):
                with smtplib.SMTP("127.0.0.1", port, local_hostname="c.test", timeout=10) as c:
                    c.sendmail("a@example.com", ["b@example.net"], msg)
        spf_queries = [q for q in dns.queries if q[:2] == ("example.com.", "TXT")]
    assert served.returncode == 0, served.stderr
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == 2
    assert len(spf_queries) == asked
