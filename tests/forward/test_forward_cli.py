"""`smtpx serve --forward`: flag mistakes, and the scale-out recipe of docs/deployment.md.

The recipe runs the shipped ``examples/haproxy.cfg`` (PROXY v2) in front of two
``smtpx serve --proxy --workers 2 --accept-domain ... --forward lmtp://...`` processes, which
forward to Dovecot LMTP run from ``examples/dovecot-lmtp.conf``.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.edges.edgeutil import free_port, stop_process, wait_for_port, wait_until
from tests.edges.test_haproxy_real import EXAMPLE
from tests.forward.dovecot import PrivateDovecot
from tests.test_cli_errors import ENV, smtpx_cli

BAD = [
    ("ftp://h:21", "scheme"),
    ("smtp://", "no host"),
    ("smtp://h:70000", "port"),
    ("lmtp://h?starttls=1", "starttls"),
    ("lmtp+unix://rel/sock", "lmtp+unix:///"),
]


@pytest.mark.parametrize(("url", "word"), BAD)
def test_bad_forward_url_is_one_line_exit_2(tmp_path: Path, url: str, word: str) -> None:
    result = smtpx_cli("serve", "--forward", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("smtpx serve: error: argument --forward: ")
    assert word in line and url in line
    assert not (tmp_path / "maildir").exists()


def test_forward_timeout_must_be_positive(tmp_path: Path) -> None:
    result = smtpx_cli("serve", "--forward", "smtp://h:25", "--forward-timeout", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--forward-timeout" in result.stderr


@pytest.fixture
def smtpx_procs(tmp_path: Path) -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> int:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "smtpx", "serve", "--addr", f"127.0.0.1:{port}", *flags],
            env=ENV,
            cwd=tmp_path,  # not the tree: `python -m smtpx` there imports the source, not the wheel
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        wait_for_port(port)
        return port

    yield start
    for proc in procs:
        stop_process(proc)


def test_haproxy_smtpx_workers_forward_to_dovecot(
    tmp_path: Path, haproxy: Callable[[str], int], smtpx_procs: Callable[..., int]
) -> None:
    dovecot = PrivateDovecot(["u@example.org"]).start()
    try:
        flags = [
            "--maildir", str(tmp_path / "unused"), "--proxy", "--workers", "2",
            "--accept-domain", "example.org", "--forward", f"lmtp://127.0.0.1:{dovecot.port}",
            "--forward-timeout", "20",
        ]  # fmt: skip
        ports = iter([smtpx_procs(*flags), smtpx_procs(*flags)])
        config = EXAMPLE.read_text()
        config = config.replace("bind :25", "bind 127.0.0.1:{listen}")
        config = config.replace("log stderr format short local0 info", "")
        config = re.sub(r"    server smtpx3 .*\n", "", config)
        config = re.sub(r"127\.0\.0\.1:1002[56]", lambda _: f"127.0.0.1:{next(ports)}", config)
        port = haproxy(config)
        for i in range(4):
            with smtplib.SMTP("127.0.0.1", port, local_hostname="c.test", timeout=30) as c:
                refused = c.sendmail(
                    "a@c.test",
                    ["u@example.org", "ghost@example.org", "x@elsewhere.test"],
                    f"Subject: n{i}\r\n\r\nvia haproxy\r\n",
                )
                # Dovecot refuses the unknown user; --accept-domain the other domain,
                # before the backend ever sees it.
                assert refused["ghost@example.org"][0] == 550
                assert refused["x@elsewhere.test"][0] == 550
                assert refused["x@elsewhere.test"][1].startswith(b"5.7.1")
        assert wait_until(lambda: len(dovecot.delivered("u@example.org")) == 4, 10)
        got = dovecot.delivered("u@example.org")
        assert sorted(m.split(b"Subject: ")[1][:2] for m in got) == [b"n0", b"n1", b"n2", b"n3"]
        # The smtpx hop's Received header names the real client (PROXY v2), no Return-Path.
        assert all(b"Received: from c.test (" in m for m in got)
        assert all(m.count(b"Return-Path:") == 1 for m in got)  # Dovecot's own, at delivery
        assert not (tmp_path / "unused").exists()  # --maildir is unused with --forward
        assert "elsewhere.test" not in dovecot.log_text()
    finally:
        dovecot.stop()
