"""Scripted SMTP/LMTP backends on loopback, for the failure cases a real server will not show.

``FakeBackend(script)`` runs an asyncio server in a thread; ``script(reader, writer)`` plays one
connection. ``lines`` records every line each connection received.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

Script = Callable[["Conn"], Awaitable[None]]


class Conn:
    """One backend connection as a script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lines: list[bytes] = []

    async def say(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self) -> bytes:
        raw = await self.reader.readline()
        self.lines.append(raw)
        return raw

    async def message(self) -> bytes:
        """Read up to the final dot; the message as sent (still dot-stuffed)."""
        out: list[bytes] = []
        while True:
            raw = await self.reader.readline()
            if raw in (b".\r\n", b""):
                return b"".join(out)
            out.append(raw)

    async def dialogue(self, replies: dict[bytes, bytes], *, lmtp: bool = False) -> None:
        """A plain backend: answer commands from ``replies`` (by verb), messages with 250."""
        await self.say(b"220 fake ESMTP\r\n")
        rcpts = 0
        while True:
            raw = await self.line()
            if not raw:
                return
            verb = raw[:4].upper()
            if verb in (b"EHLO", b"LHLO"):
                await self.say(b"250-fake\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
            elif verb in replies:
                await self.say(replies[verb])
                if verb == b"DATA" and replies[verb].startswith(b"354"):
                    await self.message()
                    await self.say(replies.get(b".", b"250 2.0.0 ok\r\n") * (rcpts if lmtp else 1))
            elif verb == b"RCPT":
                rcpts += 1
                await self.say(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                await self.say(b"354 go\r\n")
                await self.message()
                await self.say(b"250 2.0.0 ok\r\n" * (rcpts if lmtp else 1))
            elif verb == b"QUIT":
                await self.say(b"221 bye\r\n")
                return
            else:
                if verb == b"RSET":
                    rcpts = 0
                await self.say(b"250 2.0.0 ok\r\n")


class FakeBackend:
    """An asyncio server in a thread that runs ``script`` for each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.conns: list[Conn] = []
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self.conns.append(conn)
        try:
            await self.script(conn)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def start(self) -> FakeBackend:
        self._thread.start()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

        asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
