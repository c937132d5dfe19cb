"""A real smtpx Server on a Unix socket, run by its own loop in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType
from typing import Any

from typing_extensions import Self

from smtpx import Envelope, Response
from smtpx.handler import HandlerFunc
from smtpx.server import Server


class UnixServer:
    """``Server(addr="unix:PATH", ...)`` in a thread; ``received`` lists accepted envelopes."""

    def __init__(self, path: str, **options: Any) -> None:
        options.setdefault("hostname", "mx.test")
        middlewares = list(options.pop("middlewares", ()))
        self.server = Server(
            addr=f"unix:{path}", middlewares=[self._record, *middlewares], **options
        )
        self.path = path
        self.received: list[Envelope] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _record(self, next_: HandlerFunc) -> HandlerFunc:
        async def record(envelope: Envelope) -> Response | None:
            response = await next_(envelope)
            self.received.append(envelope)
            return response

        return record

    def start(self) -> Self:
        """Start listening; raises what ``Server.start`` raises (e.g. OSError for the path)."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(5), self._loop).result(15)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.path)
        return sock

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
