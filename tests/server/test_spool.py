"""Long messages are spooled to disk (issue 14): real server, real clients, real files."""

from __future__ import annotations

import errno
import os
import signal
import smtplib
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from smtpx import Envelope
from smtpx._spool import Spool
from smtpx.maildir import MaildirHandler
from tests.server.serverthread import ServerThread
from tests.server.test_cli import serve
from tests.server.test_stream_rss import server_pid

THRESHOLD = 1 << 20
# Lines that start with a dot (stuffed by the client, unstuffed by the reader), CRLF ends.
MESSAGE = b"Subject: big\r\n\r\n" + b"".join(
    b".line %07d of the body\r\n" % i for i in range(120000)
)


def fds_into(directory: Path) -> list[str]:
    """This process's descriptors open on files in ``directory``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def wait_until(check: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


class Seen:
    """An async handler that records every view of the message while it is handled."""

    def __init__(self, spool_dir: Path) -> None:
        self.spool_dir = spool_dir
        self.views: list[dict[str, Any]] = []

    async def __call__(self, envelope: Envelope) -> None:
        view: dict[str, Any] = {
            "spooled": envelope.spooled,
            "path": envelope.spool_path,
            "files": os.listdir(self.spool_dir),
            "chunks": b"".join([c async for c in envelope.chunks(50000)]),
            "len": len(envelope),
        }
        with envelope.open() as f:
            view["open"] = f.read()
        view["data"] = envelope.data
        self.views.append(view)


def test_a_message_over_the_threshold_is_spooled_and_every_view_agrees(
    make_server: Any, tmp_path: Path
) -> None:
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen, spool_threshold=THRESHOLD, spool_dir=tmp_path, max_size=20 << 20
    )
    small = b"Subject: small\r\n\r\nhello\r\n"
    with srv.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        client.sendmail("a@example.org", ["b@example.org"], small)
    big_view, small_view = seen.views
    assert big_view["spooled"]
    assert big_view["path"] is not None
    assert big_view["files"] == [os.path.basename(big_view["path"])]
    assert big_view["len"] == len(MESSAGE)
    assert big_view["chunks"] == big_view["open"] == big_view["data"] == MESSAGE
    assert not small_view["spooled"]
    assert small_view["data"] == small_view["open"] == small_view["chunks"] == small
    assert os.listdir(tmp_path) == []  # removed once the handler returned
    assert fds_into(tmp_path) == []


def test_a_bdat_message_is_spooled_too(make_server: Any, tmp_path: Path) -> None:
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen, spool_threshold=THRESHOLD, spool_dir=tmp_path, max_size=20 << 20
    )
    body = MESSAGE.replace(b"\r\n.", b"\r\n")  # BDAT: no stuffing
    half = len(body) // 2
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        c.cmd(b"MAIL FROM:<a@example.org>\r\n")
        c.cmd(b"RCPT TO:<b@example.org>\r\n")
        assert c.cmd(b"BDAT %d\r\n" % half + body[:half]).startswith(b"250")
        rest = body[half:]
        assert c.cmd(b"BDAT %d LAST\r\n" % len(rest) + rest).startswith(b"250")
    (view,) = seen.views
    assert view["spooled"]
    assert view["data"] == view["open"] == view["chunks"] == body
    assert os.listdir(tmp_path) == []


def _start_upload(srv: ServerThread, size: int, *, bdat: bool = False) -> socket.socket:
    """A client that sends ``size`` bytes of a message (DATA, or a BDAT chunk 10 bytes longer)."""
    line = b"y" * 998 + b"\r\n"
    count = size // len(line)
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"EHLO client.test\r\n")
    while f.readline()[3:4] == b"-":
        pass
    sock.sendall(b"MAIL FROM:<a@example.org>\r\n")
    f.readline()
    sock.sendall(b"RCPT TO:<b@example.org>\r\n")
    f.readline()
    if bdat:
        sock.sendall(b"BDAT %d\r\n" % (count * len(line) + 10))
    else:
        sock.sendall(b"DATA\r\n")
        assert f.readline().startswith(b"354")
    for _ in range(count):
        sock.sendall(line)
    return sock


@pytest.mark.parametrize("how", ["disconnect", "timeout", "shutdown", "rset-after-bdat-chunk"])
def test_an_abandoned_upload_leaves_no_spool_file_and_no_descriptor(
    make_server: Any, tmp_path: Path, how: str
) -> None:
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen,
        spool_threshold=256 * 1024,
        spool_dir=tmp_path,
        max_size=20 << 20,
        timeout=1.0 if how == "timeout" else 30.0,
    )
    sock = _start_upload(srv, 2 << 20, bdat=how == "rset-after-bdat-chunk")
    try:
        wait_until(lambda: len(os.listdir(tmp_path)) == 1)  # the upload is being spooled
        assert len(fds_into(tmp_path)) == 1
        if how == "disconnect":
            sock.close()
        elif how == "shutdown":
            srv.stop(timeout=0.5)
        elif how == "rset-after-bdat-chunk":
            # The declared chunk is 10 bytes longer than what was sent: finish it, then RSET.
            sock.sendall(b"z" * 10 + b"RSET\r\n")
        wait_until(lambda: os.listdir(tmp_path) == [] and fds_into(tmp_path) == [])
    finally:
        sock.close()
    assert seen.views == []


def test_a_refused_message_leaves_no_spool_file(make_server: Any, tmp_path: Path) -> None:
    # Over max_size after it was partly spooled: 552, and the file goes.
    srv = make_server(spool_threshold=256 * 1024, spool_dir=tmp_path, max_size=1 << 20)
    sock = _start_upload(srv, 2 << 20)
    with sock, sock.makefile("rb") as f:
        sock.sendall(b".\r\n")
        assert f.readline().startswith(b"552")
        assert os.listdir(tmp_path) == []
        assert fds_into(tmp_path) == []


def test_a_full_disk_while_spooling_answers_451_and_leaves_nothing(
    make_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = Spool.write
    calls = 0

    def full_disk(self: Spool, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(Spool, "write", full_disk)
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen, spool_threshold=256 * 1024, spool_dir=tmp_path, max_size=20 << 20
    )
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        c.cmd(b"MAIL FROM:<a@example.org>\r\n")
        c.cmd(b"RCPT TO:<b@example.org>\r\n")
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        c.send((b"z" * 998 + b"\r\n") * 3000)
        # The client is read to its end and stays in step: one reply, then the next command.
        assert c.cmd(b".\r\n").startswith(b"451 4.3.0")
        assert os.listdir(tmp_path) == []
        assert fds_into(tmp_path) == []
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
    assert calls > 2
    assert seen.views == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_real_enospc_from_the_kernel_answers_451(
    make_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spool descriptor is /dev/full, where every write fails with ENOSPC in the kernel;
    # the spool's own path is a real file, which must be gone afterwards.
    made: list[str] = []

    def full_mkstemp(prefix: str, suffix: str, dir: str | None) -> tuple[int, str]:
        path = os.path.join(dir or "/tmp", f"{prefix}full{len(made)}{suffix}")
        Path(path).touch(exist_ok=False)
        made.append(path)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(tempfile, "mkstemp", full_mkstemp)  # the module _spool calls
    srv = make_server(spool_threshold=256 * 1024, spool_dir=tmp_path, max_size=20 << 20)
    sock = _start_upload(srv, 2 << 20)
    with sock, sock.makefile("rb") as f:
        sock.sendall(b".\r\nNOOP\r\n")
        assert f.readline().startswith(b"451 4.3.0")
        assert f.readline().startswith(b"250")
    assert made
    assert os.listdir(tmp_path) == []
    assert fds_into(Path("/dev/full")) == []


def test_the_memory_cap_spools_messages_under_the_threshold(
    make_server: Any, tmp_path: Path
) -> None:
    # Two uploads of 800 KiB, each under the 4 MiB threshold; together over the 1 MiB cap.
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen,
        spool_threshold=4 << 20,
        max_memory=1 << 20,
        spool_dir=tmp_path,
        max_size=20 << 20,
    )
    first = _start_upload(srv, 800 * 1024)
    budget = srv.server._memory_budget
    wait_until(lambda: budget.used >= 512 * 1024)  # the first one is held in memory
    second = _start_upload(srv, 800 * 1024)
    for sock in (second, first):
        with sock.makefile("rb") as f:
            sock.sendall(b".\r\n")
            assert f.readline().startswith(b"250")
        sock.close()
    assert [v["spooled"] for v in seen.views] == [True, False]
    assert budget.used == 0
    assert os.listdir(tmp_path) == []


def test_maildir_stores_a_spooled_message_byte_identical(make_server: Any, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    store = MaildirHandler(tmp_path / "Maildir")
    srv = make_server(
        handler=store, spool_threshold=THRESHOLD, spool_dir=spool_dir, max_size=20 << 20
    )
    with srv.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    (stored,) = (tmp_path / "Maildir" / "new").iterdir()
    assert stored.read_bytes() == MESSAGE
    assert os.listdir(spool_dir) == []
    assert os.listdir(tmp_path / "Maildir" / "tmp") == []


def test_a_handler_in_a_thread_reads_the_spool(make_server: Any, tmp_path: Path) -> None:
    # A plain (synchronous) handler runs in a worker thread and may read the file directly.
    got: list[bytes] = []
    lock = threading.Lock()

    def handler(envelope: Envelope) -> None:
        with envelope.open() as f, lock:
            got.append(f.read())

    srv = make_server(
        handler=handler, spool_threshold=THRESHOLD, spool_dir=tmp_path, max_size=20 << 20
    )
    with srv.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert got == [MESSAGE]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fail", ["copy", "fsync"])
def test_maildir_failing_on_a_spooled_message_answers_451_and_leaves_nothing(
    make_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: str
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    store = MaildirHandler(tmp_path / "Maildir")
    srv = make_server(
        handler=store, spool_threshold=THRESHOLD, spool_dir=spool_dir, max_size=20 << 20
    )
    real_sendfile = os.sendfile

    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def copy_then_full(out: int, src: int, offset: int, count: int) -> int:
        if offset < 300_000:
            return real_sendfile(out, src, offset, min(count, 100_000))  # part reaches tmp/
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        if fail == "copy":
            patch.setattr(os, "sendfile", copy_then_full)
        else:
            patch.setattr(os, "fsync", disk_full)
        with srv.smtp() as client:
            with pytest.raises(smtplib.SMTPDataError) as caught:
                client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
            assert caught.value.smtp_code == 451
            assert os.listdir(tmp_path / "Maildir" / "tmp") == []
            assert os.listdir(tmp_path / "Maildir" / "new") == []
            assert os.listdir(spool_dir) == []
    with srv.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    (stored,) = (tmp_path / "Maildir" / "new").iterdir()
    assert stored.read_bytes() == MESSAGE
    assert real_sendfile is os.sendfile


def test_a_refused_message_never_lends_its_bytes_to_the_next_one(
    make_server: Any, tmp_path: Path
) -> None:
    # BDAT pipelining (RFC 3030): the rest of a message the core refuses (a bare LF) and the
    # whole next transaction arrive in one read. The next message is only its own bytes.
    seen = Seen(tmp_path)
    srv = make_server(
        handler=seen,
        spool_threshold=256 * 1024,
        spool_dir=tmp_path,
        max_size=20 << 20,
        forbid_unauth_pipelining=False,
    )
    first = b"x" * 998 + b"\r\n"
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        c.cmd(b"MAIL FROM:<a@example.org>\r\n")
        c.cmd(b"RCPT TO:<b@example.org>\r\n")
        assert c.cmd(b"BDAT %d\r\n" % (len(first) * 700) + first * 700).startswith(b"250")
        wait_until(lambda: len(os.listdir(tmp_path)) == 1)
        c.send(
            b"BDAT 8 LAST\r\nbare\nLF!"
            b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nBDAT 4 LAST\r\nhi\r\n"
        )
        assert c.reply().startswith(b"550")
        assert c.reply().startswith(b"250")
        assert c.reply().startswith(b"250")
        assert c.reply().startswith(b"250")
    (view,) = seen.views
    assert view["data"] == b"hi\r\n"
    assert not view["spooled"]
    assert os.listdir(tmp_path) == []


def _upload_until_spooled(port: int, spool: Path) -> socket.socket:
    """A client midway through a 2 MiB message, once its spool file exists."""
    line = b"y" * 998 + b"\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    for command in (b"EHLO client.test\r\n", b"MAIL FROM:<a@example.org>\r\n"):
        sock.sendall(command)
        while f.readline()[3:4] == b"-":
            pass
    sock.sendall(b"RCPT TO:<b@example.org>\r\nDATA\r\n")
    assert f.readline().startswith(b"250")
    assert f.readline().startswith(b"354")
    for _ in range(2048):
        sock.sendall(line)
    wait_until(lambda: len(list(spool.glob("smtpx-*.msg"))) == 1)
    return sock


def test_spool_files_of_a_killed_server_are_removed_at_the_next_start(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    flags = ("--spool-dir", str(spool), "--spool-threshold", "262144")
    other = spool / "smtpx-notours.txt"  # not a spool file's name: never touched
    other.write_bytes(b"keep")
    with serve(tmp_path / "Maildir-a", *flags) as (port, served):
        sock = _upload_until_spooled(port, spool)
        (left,) = [p for p in spool.iterdir() if p != other]
        # SIGKILL our own child (the process listening on the port): it has no chance to
        # remove its file.
        os.kill(server_pid(port), signal.SIGKILL)
        sock.close()
    assert served.returncode == -signal.SIGKILL
    assert left.exists(), "the killed server's file should still be there"

    # A live server's file is left alone by another server starting on the same directory.
    with serve(tmp_path / "Maildir-b", *flags) as (port_b, _):
        assert not left.exists(), "the next start removes what the killed server left"
        sock_b = _upload_until_spooled(port_b, spool)
        (live,) = [p for p in spool.iterdir() if p != other]
        with serve(tmp_path / "Maildir-c", *flags) as (_, served_c):
            assert live.exists()
            for _ in range(10):
                sock_b.sendall(b"y" * 998 + b"\r\n")
            sock_b.sendall(b".\r\n")
            reply = sock_b.makefile("rb").readline()
            assert reply.startswith(b"250"), reply
            sock_b.close()
        assert "left by a process that stopped" not in served_c.stderr
    assert [p.name for p in spool.iterdir()] == [other.name]
    assert len(list((tmp_path / "Maildir-b" / "new").iterdir())) == 1
