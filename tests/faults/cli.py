"""``python -m smtpx serve`` in a subprocess, for the fault tests that signal or starve it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from tests.server.test_cli import ENV, free_port, wait_for_port


class CLI:
    """The real CLI on a free loopback port, its Maildir under ``tmp``; stopped on exit.

    ``prelude`` is Python code the child runs before ``smtpx.cli.main`` (e.g. a resource
    limit: safer than ``preexec_fn`` in a test process that runs threads).
    """

    def __init__(self, tmp: Path, *flags: str, prelude: str = "") -> None:
        self.maildir = tmp / "maildir"
        self.port = free_port()
        args = ["serve", "--addr", f"127.0.0.1:{self.port}", "--hostname", "mx.test"]
        args += ["--maildir", str(self.maildir), *flags]
        code = f"{prelude}\nimport sys\nfrom smtpx.cli import main\nsys.exit(main({args!r}))\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""
        wait_for_port(self.port, self.proc)

    def terminate(self) -> None:
        """SIGTERM, as a service manager stops it."""
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit (after ``terminate``); keeps stderr."""
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def stored(self) -> list[bytes]:
        new = self.maildir / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []

    def __enter__(self) -> CLI:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
