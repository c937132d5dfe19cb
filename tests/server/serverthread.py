"""The server tests' helper: ``smtpx.testing.Controller`` plus a raw byte-level client.

``ServerThread`` keeps the name and the few extras the server and edge tests rely on
(``received``, ``raw()``, greeting as ``mx.test``); the thread, the loop, startup errors, the
envelope recording and the graceful stop are the public ``smtpx.testing.Controller``.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
from collections.abc import Iterator
from typing import Any

from smtpx import Envelope
from smtpx.testing import Controller


class ServerThread(Controller):
    """A ``Controller`` on 127.0.0.1 named ``mx.test``; ``received`` lists accepted envelopes."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("hostname", "mx.test")
        super().__init__(**options)

    @property
    def received(self) -> list[Envelope]:
        return self.envelopes

    def smtp(self, **kw: Any) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, local_hostname="client.test", timeout=10, **kw)

    @contextlib.contextmanager
    def raw(self) -> Iterator[RawClient]:
        client = RawClient(self.host, self.port)
        try:
            yield client
        finally:
            client.close()


class RawClient:
    """A byte-level client: send exact bytes, read whole replies."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """Read one complete (possibly multiline) reply; b"" on EOF."""
        lines: list[bytes] = []
        while True:
            line = self.file.readline()
            if not line:
                return b"".join(lines)
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def cmd(self, data: bytes) -> bytes:
        self.send(data)
        return self.reply()

    def closed(self) -> bool:
        return self.file.read() == b""

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()
