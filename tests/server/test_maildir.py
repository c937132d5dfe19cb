"""Maildir storage failures (issue 9 item 16): no partial file left in tmp/, a clear CLI error."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpx.maildir import MaildirHandler
from tests.server.serverthread import ServerThread
from tests.server.test_cli import ENV

MSG = b"Subject: stored?\r\n\r\n" + b"x" * 100_000 + b"\r\n"


def send(srv: ServerThread) -> tuple[int, bytes]:
    with srv.smtp() as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("r@x.example")
        return client.data(MSG)


@pytest.mark.parametrize("fail", ["fsync", "rename"])
def test_failed_store_answers_451_and_leaves_nothing_in_tmp(
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fail: str,
) -> None:
    store = MaildirHandler(tmp_path / "md")
    srv = make_server(handler=store)

    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, fail, disk_full)  # the handler runs in a thread of this process
        code, _ = send(srv)
    assert code == 451  # never 250 for a message that is not on disk
    assert os.listdir(tmp_path / "md" / "tmp") == []
    assert os.listdir(tmp_path / "md" / "new") == []
    assert send(srv)[0] == 250  # the disk has room again
    (stored,) = (tmp_path / "md" / "new").iterdir()
    assert stored.read_bytes() == MSG
    assert os.listdir(tmp_path / "md" / "tmp") == []


def test_serve_with_maildir_at_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "smtpx", "serve", "--addr", "127.0.0.1:0", "--maildir", str(target)],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("smtpx") and "--maildir" in line and str(target) in line, line
