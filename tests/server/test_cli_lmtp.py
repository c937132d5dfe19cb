"""`smtpx serve --lmtp --addr unix:/path`: LMTP into a Maildir over a Unix socket (subprocess)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.server.test_cli import ENV


def test_serve_lmtp_on_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "lmtp.sock"
    maildir = tmp_path / "maildir"
    cmd = [sys.executable, "-m", "smtpx", "serve", "--lmtp", "--dsn", "--addr", f"unix:{path}"]
    proc = subprocess.Popen(
        [*cmd, "--unix-mode", "600", "--maildir", str(maildir), "--hostname", "store.test"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not path.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no socket"
            time.sleep(0.05)
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220 store.test")
            sock.sendall(b"LHLO c.test\r\n")
            lhlo = [f.readline()]
            while lhlo[-1][3:4] == b"-":
                lhlo.append(f.readline())
            assert b"250 DSN\r\n" in lhlo
            sock.sendall(
                b"MAIL FROM:<s@x.y> RET=HDRS\r\nRCPT TO:<a@x.y> NOTIFY=NEVER\r\n"
                b"RCPT TO:<b@x.y>\r\nBDAT 14 LAST\r\nSubject: t\r\n\r\n"
            )
            got = [f.readline()[:3] for _ in range(5)]
            assert got == [b"250"] * 5
            sock.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert not path.exists()  # removed at shutdown
    (stored,) = (maildir / "new").iterdir()
    assert b" with LMTP id " in stored.read_bytes()


def test_serve_refuses_a_regular_file_at_the_socket_path(tmp_path: Path) -> None:
    path = tmp_path / "taken"
    path.write_text("data")
    result = subprocess.run(
        [sys.executable, "-m", "smtpx", "serve", "--lmtp", "--addr", f"unix:{path}"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2  # the CLI's one-line error pattern
    assert "--addr" in result.stderr and "not a socket" in result.stderr
    assert path.read_text() == "data"
