"""Run a real smtpx Server on a loopback port in a background thread (aiosmtpd Controller style)."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from smtpx import Envelope, Response, Server


class ServerThread:
    """A Server on 127.0.0.1 with its own event loop; ``received`` collects envelopes."""

    def __init__(self, **options: Any) -> None:
        self.received: list[Envelope] = []
        options.setdefault("hostname", "mx.test")
        options.setdefault("addr", "127.0.0.1:0")
        if "handler" not in options:
            options["handler"] = self._collect
        self.server = Server(**options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    async def _collect(self, envelope: Envelope) -> Response | None:
        self.received.append(envelope)
        return None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # handed to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5) -> bool:
        graceful = True
        if self.server.state.value == "running":
            graceful = bool(self.call(self.server.shutdown(timeout), timeout + 5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        return graceful

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
