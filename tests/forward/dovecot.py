"""A private Dovecot LMTP server for tests, from ``examples/dovecot-lmtp.conf``.

Everything lives under one temporary directory, owned by ``nobody``, which the LMTP and auth
services run as (the master starts as root and drops to it). Started with
``dovecot -c CONF -F`` in the foreground and stopped by its PID.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.edges.edgeutil import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
EXAMPLE = Path(__file__).parents[2] / "examples" / "dovecot-lmtp.conf"


class PrivateDovecot:
    """Dovecot LMTP on a loopback port and a Unix socket; ``users`` are its mailboxes.

    ``broken`` users exist but cannot be written to (their home belongs to root, mode 555):
    Dovecot accepts them at RCPT and fails them after DATA with ``451 4.2.0``.
    """

    def __init__(self, users: Sequence[str], broken: Sequence[str] = ()) -> None:
        assert os.path.exists("/usr/lib/dovecot/lmtp"), (
            "Dovecot LMTP is not installed: run .ci/install-peers (dovecot-lmtpd)"
        )
        assert os.geteuid() == 0, "the Dovecot master must start as root to drop to nobody"
        nobody = pwd.getpwnam("nobody")
        # Not pytest's tmp_path: its parents are mode 0700, and nobody must reach the files.
        self.root = Path(tempfile.mkdtemp(prefix="smtpx-dovecot-"))
        self.mail = self.root / "mail"
        self.mail.mkdir()
        (self.root / "users").write_text("".join(f"{u}:::::::\n" for u in [*users, *broken]))
        for d, _, files in os.walk(self.root):
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
            for f in files:
                os.chown(os.path.join(d, f), nobody.pw_uid, nobody.pw_gid)
        self.root.chmod(0o755)
        for user in broken:
            local, domain = user.split("@")
            home = self.mail / domain / local
            home.mkdir(parents=True)
            os.chown(home.parent, nobody.pw_uid, nobody.pw_gid)
            home.chmod(0o555)  # root's: nobody cannot make the Maildir
        self.port = free_port()
        self.socket = self.root / "run" / "lmtp"
        conf = (
            EXAMPLE.read_text()
            .replace("@BASE@", str(self.root))
            .replace("@PORT@", str(self.port))
            .replace("@USER@", "nobody")
            .replace("@GROUP@", grp.getgrgid(nobody.pw_gid).gr_name)
        )
        self.config = self.root / "dovecot.conf"
        self.config.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateDovecot:
        self.proc = subprocess.Popen(
            [DOVECOT, "-c", str(self.config), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 20
        while not self.socket.exists() and time.monotonic() < end:
            assert self.proc.poll() is None, f"dovecot exited: {self.log_text()}"
            time.sleep(0.05)
        assert self.socket.exists(), f"dovecot did not start: {self.log_text()}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text()
        except OSError:
            return ""

    def delivered(self, user: str) -> list[bytes]:
        """The messages in ``user``'s Maildir (new/ and cur/), oldest name first."""
        local, domain = user.split("@")
        box = self.mail / domain / local
        files = sorted([*box.glob("new/*"), *box.glob("cur/*")])
        return [f.read_bytes() for f in files]
