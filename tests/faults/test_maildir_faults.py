"""A full disk under the Maildir store: 451, never 250, and no partial file left in tmp/.

``tests/server/test_maildir.py`` fails ``fsync`` and ``rename``; here the write itself fails,
after part of the message reached the file, both by injection (ENOSPC, EIO, EDQUOT) and for
real: the CLI runs under ``RLIMIT_FSIZE``, so the kernel refuses the write (EFBIG) as it would
on a full disk, in the real ``smtpx serve`` process.
"""

from __future__ import annotations

import builtins
import errno
import os
import smtplib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from smtpx import maildir as maildir_module
from smtpx.maildir import MaildirHandler
from tests.faults.cli import CLI
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
BIG = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
SMALL = b"Subject: small\r\n\r\nfits\r\n"


def send(port: int, msg: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20) as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("r@x.example")
        return client.data(msg)


class HalfWrite:
    """A file whose ``write`` stores half of the data, then fails like a full disk."""

    def __init__(self, f: IO[bytes], code: int) -> None:
        self._f = f
        self._code = code

    def write(self, data: bytes) -> int:
        self._f.write(data[: len(data) // 2])
        self._f.flush()
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> HalfWrite:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_failed_write_answers_451_and_removes_the_partial_file(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, code: int
) -> None:
    store = MaildirHandler(tmp_path / "md")
    srv = make_server(handler=store)
    partial: list[Path] = []

    def failing_open(path: Any, mode: str = "r", *args: Any, **kw: Any) -> Any:
        partial.append(Path(path))
        return HalfWrite(builtins.open(path, mode, *args, **kw), code)

    with monkeypatch.context() as patch:
        # MaildirHandler opens with the builtin; the handler runs in a thread of this process.
        patch.setattr(maildir_module, "open", failing_open, raising=False)
        assert send(srv.port, BIG)[0] == 451  # never 250 for a message that is not on disk
    assert partial and not partial[0].exists()  # the half-written file was there, and is gone
    assert os.listdir(tmp_path / "md" / "tmp") == []
    assert os.listdir(tmp_path / "md" / "new") == []
    assert send(srv.port, BIG)[0] == 250  # room again
    (stored,) = (tmp_path / "md" / "new").iterdir()
    assert stored.read_bytes() == BIG


# Files the server writes may not grow past 64 KiB: the kernel fails the write with EFBIG
# (Python ignores SIGXFSZ), as a full disk fails it with ENOSPC.
LIMIT = (
    "import resource\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))"
)


def test_cli_with_a_write_the_kernel_refuses(tmp_path: Path) -> None:
    with CLI(tmp_path, prelude=LIMIT) as cli:
        assert send(cli.port, BIG)[0] == 451
        assert os.listdir(cli.maildir / "tmp") == []
        assert send(cli.port, SMALL)[0] == 250  # a message that fits is stored
        assert cli.proc.poll() is None
        cli.terminate()
        assert cli.wait() == 0, cli.stderr
    (stored,) = cli.stored()
    assert stored.endswith(SMALL)
    assert os.listdir(cli.maildir / "tmp") == []
    assert "File too large" in cli.stderr  # the one logged failure names the cause
