"""The CLI as a real process: file-descriptor exhaustion (EMFILE) and --workers."""

from __future__ import annotations

import os
import re
import select
import signal
import smtplib
import socket
import subprocess
import sys
import threading
from pathlib import Path

import smtpx
from tests.edges.edgeutil import stop_process, wait_until

# The smtpx these tests imported (the installed wheel under tox, the tree otherwise).
SMTPX_PATH = str(Path(smtpx.__file__).resolve().parents[1])
LISTENING = re.compile(r"smtpx: listening on 127\.0\.0\.1:(\d+) \(pid (\d+)\)")


class Served:
    """``python -m smtpx serve`` (optionally behind a low fd limit) with its stderr collected."""

    def __init__(self, maildir: Path, *args: str, fd_limit: int | None = None) -> None:
        argv = ["serve", "--addr", "127.0.0.1:0", "--hostname", "mx.test"]
        argv += ["--maildir", str(maildir), *args]
        code = (
            "import resource, sys\n"
            + (
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({fd_limit}, "
                "resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
                if fd_limit
                else ""
            )
            + f"from smtpx.cli import main\nsys.exit(main({argv!r}))\n"
        )
        env = {**os.environ, "PYTHONPATH": SMTPX_PATH}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stderr=subprocess.PIPE, env=env, cwd=maildir.parent
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def listening(self, count: int = 1) -> list[tuple[int, int]]:
        """(port, pid) of each listening process, once ``count`` of them said so."""
        assert wait_until(lambda: len(LISTENING.findall(self.log)) >= count, 15), self.log
        return [(int(p), int(pid)) for p, pid in LISTENING.findall(self.log)]


def greeted(socks: list[socket.socket], quiet: float = 1.5) -> set[socket.socket]:
    """Sockets that received a greeting, waiting until none arrives for ``quiet`` seconds."""
    got: set[socket.socket] = set()
    while True:
        waiting = [s for s in socks if s not in got]
        if not waiting:
            return got
        ready, _, _ = select.select(waiting, [], [], quiet)
        if not ready:
            return got
        for s in ready:
            assert s.recv(100).startswith(b"220 mx.test")
            got.add(s)


def test_emfile_pauses_accepting_and_recovers(tmp_path: Path) -> None:
    served = Served(tmp_path / "maildir", "--max-clients", "1000", fd_limit=48)
    try:
        ((port, _),) = served.listening()
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(60)]
        first = greeted(socks, quiet=5)  # a loaded machine may take seconds to greet at all
        waiting = [s for s in socks if s not in first]
        # The server ran out of descriptors: some connections wait in the backlog ...
        assert first and waiting
        assert wait_until(lambda: "out of system resource" in served.log), served.log
        assert served.proc.poll() is None  # ... and the process is alive and accepting later.
        for s in list(first)[3:]:
            s.close()
        assert greeted(waiting, quiet=10) == set(waiting)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            assert client.sendmail("a@b.example", ["r@x.example"], b"Subject: e\r\n\r\nx\r\n") == {}
        assert len(list((tmp_path / "maildir" / "new").iterdir())) == 1
        print(
            f"EMFILE: {len(first)} of 60 greeted under RLIMIT_NOFILE=48, "
            f"{len(waiting)} served after descriptors were freed"
        )
        for s in socks:
            s.close()
    finally:
        code = stop_process(served.proc)
    assert code == 0, served.log


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_workers_share_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    served = Served(maildir, "--workers", "2")
    try:
        workers = served.listening(2)
        ports = {port for port, _ in workers}
        pids = {pid for _, pid in workers}
        assert len(ports) == 1 and len(pids) == 2
        port = ports.pop()
        assert all(_ppid(pid) == served.proc.pid for pid in pids)
        for i in range(24):  # one connection each: the kernel spreads them by 4-tuple
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail("a@b.example", ["r@x.example"], f"Subject: {i}\r\n\r\nx\r\n")
        files = list((maildir / "new").iterdir())
        assert len(files) == 24
        served_by = {int(m.group(1)) for f in files if (m := re.search(r"\.P(\d+)Q", f.name))}
        assert served_by == pids  # both processes served mail
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(15) == 0
    finally:
        stop_process(served.proc)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()  # every worker stopped and was reaped
    print(f"--workers 2: pids {sorted(pids)} on port {port} served 24 messages")
