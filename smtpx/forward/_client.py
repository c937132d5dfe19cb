"""The backend client on an asyncio protocol: one connection, commands, bounded replies."""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import cast

from smtpx.responses import Response

# A reply line: three digits, then space, dash or nothing (RFC 5321 4.2).
_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*)\Z", re.DOTALL)
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |\Z)")
# Anything that must not reach the client: C0 controls (TAB aside), DEL, C1 controls, the
# Unicode line and paragraph separators and bidi overrides.
_BAD_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")


if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    class _timeout:
        """``asyncio.timeout`` for Python 3.10: cancel the task, raise TimeoutError."""

        def __init__(self, delay: float) -> None:
            self._delay = delay
            self._fired = False
            self._handle: asyncio.TimerHandle | None = None

        async def __aenter__(self) -> None:
            task = asyncio.current_task()
            assert task is not None

            def fire() -> None:
                self._fired = True
                task.cancel()

            self._handle = asyncio.get_running_loop().call_later(self._delay, fire)

        async def __aexit__(
            self,
            kind: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            if self._handle is not None:
                self._handle.cancel()
            if self._fired and kind is asyncio.CancelledError:
                raise TimeoutError from exc


async def _in_task() -> None:
    """Make sure the rest of the caller runs inside a task, as ``_timeout`` needs.

    The session runs a hook's (and the handler's) first step outside any task, which saves a
    task when it does not wait; one bare yield hands the rest to the session's own task.
    """
    if asyncio.current_task() is None:
        await asyncio.sleep(0)


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class _BackendError(Exception):
    """The backend failed (unreachable, closed, timed out, malformed or oversized reply)."""


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]

    def response(self) -> Response:
        """The reply re-wrapped as smtpx's own (text checked when it was read)."""
        first = self.lines[0]
        # The class digit and a dot first, or no enhanced code at all (most texts are checked
        # by this alone).
        match = _ENHANCED.match(first) if first[1:2] == "." else None
        cls = str(self.code // 100)
        enhanced = f"{cls}.0.0"
        texts = list(self.lines)
        if match is not None and match.group(1) == cls:
            enhanced = match.group(0).strip()
            # Every line may repeat it (Postfix does); it is put back by Response.lines().
            texts = [t[len(enhanced) :].lstrip(" ") if t.startswith(enhanced) else t for t in texts]
        return Response(self.code, enhanced, "\n".join(texts))


class _Backend(asyncio.Protocol):
    """One connection to the backend, as an asyncio protocol: commands out, bounded replies in.

    Replies are parsed as the bytes arrive (``data_received``) and handed to the one waiting
    ``read_reply``: no stream reader, no task per line. Anything wrong with a reply (a bad or
    mixed code, a line without CRLF, control characters, over the size or line bounds) marks
    the connection failed and aborts it.
    """

    __slots__ = (
        "_buffer",
        "_code",
        "_deadline",
        "_drain",
        "_error",
        "_limits",
        "_lines",
        "_paused",
        "_replies",
        "_timer",
        "_total",
        "_waiter",
        "expired",
        "extensions",
        "idle_since",
        "lmtp",
        "transport",
        "used",
    )

    def __init__(self, lmtp: bool, limits: tuple[int, int]) -> None:
        self.lmtp = lmtp
        self.extensions: dict[str, str] = {}
        self.idle_since = time.monotonic()
        self.used = False  # has carried a transaction: a failure at MAIL may be a stale one
        self.expired = False
        self.transport: asyncio.Transport | None = None
        self._limits = limits
        self._buffer = bytearray()
        self._code = b""
        self._lines: list[str] = []
        self._total = 0
        self._replies: collections.deque[_Reply] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: _BackendError | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}" if exc else "connection closed")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def eof_received(self) -> bool:
        self._fail("connection closed")
        return False  # close our side too

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        _wake(self._drain)

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        buffer = self._buffer
        buffer += data
        max_bytes, max_lines = self._limits
        start = 0
        try:
            while True:
                end = buffer.find(b"\n", start)
                if end < 0:
                    if self._total + len(buffer) - start > max_bytes:
                        raise _BackendError("reply over the size or line bounds")
                    break
                self._line(buffer[start : end + 1], max_bytes, max_lines)
                start = end + 1
        except _BackendError as exc:
            self._fail(str(exc))
            return
        del buffer[:start]

    def _line(self, raw: bytearray, max_bytes: int, max_lines: int) -> None:
        self._total += len(raw)
        lines = self._lines
        if self._total > max_bytes or len(lines) >= max_lines:
            raise _BackendError("reply over the size or line bounds")
        if not raw.endswith(b"\r\n"):
            raise _BackendError("reply line without CRLF")
        match = _LINE.match(raw, 0, len(raw) - 2)
        if match is None or (self._code and match.group(1) != self._code):
            raise _BackendError(f"malformed reply line {bytes(raw[:40])!r}")
        code, sep, body = match.groups()
        if body and not sep:
            raise _BackendError(f"malformed reply line {bytes(raw[:40])!r}")
        # RFC 5321 4.2: reply text is ASCII (UTF-8 only with SMTPUTF8, RFC 6531 3.7.4);
        # anything else is relayed as "?", never as raw bytes.
        if body.isascii():
            text = body.decode("ascii")
        else:
            text = body.decode("utf-8", "replace").encode("ascii", "replace").decode()
        if _BAD_TEXT.search(text):
            raise _BackendError("control character in the reply text")
        lines.append(text)
        if sep == b"-":
            self._code = code
            return
        self._replies.append(_Reply(int(code), tuple(lines)))
        self._code = b""
        self._lines = []
        self._total = 0
        _wake(self._waiter)

    def _fail(self, why: str) -> None:
        """Mark the connection failed, end whatever waits on it, and abort it."""
        if self._error is None:
            self._error = _BackendError(why)
        _wake(self._waiter)
        _wake(self._drain)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    # ------------------------------------------------------------------ the client side
    @property
    def closed(self) -> bool:
        """Closed, or holding input nobody asked for (an extra reply would be misread)."""
        transport = self.transport
        return (
            transport is None
            or transport.is_closing()
            or self._error is not None
            or bool(self._replies)
            or bool(self._buffer)
        )

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _arm(self, timeout: float) -> asyncio.AbstractEventLoop:
        """Start the deadline of one wait (a whole reply, or the backend taking the message).

        One timer per connection, re-armed only when it fires early: a wait costs a clock
        read, not a timer scheduled and cancelled.
        """
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + timeout
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._check_deadline)
        return loop

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # no wait now: the next one arms again
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            self._timer = loop.call_at(deadline, self._check_deadline)
            return
        # The deadline passed: fail the connection, which ends the wait.
        self.expired = True
        self._fail("timed out")

    async def _wait(self, timeout: float, *, drain: bool = False) -> None:
        """Wait for a wake-up: a whole reply (or, with ``drain``, room to write), or a failure.

        A failure includes the deadline, ``timeout`` seconds away; the caller looks at what
        happened.
        """
        future = self._arm(timeout).create_future()
        if drain:
            self._drain = future
        else:
            self._waiter = future
        try:
            await future
        finally:
            self._deadline = None
            self._waiter = self._drain = None

    async def read_reply(self, timeout: float) -> _Reply:
        """Read one whole reply within ``timeout`` seconds.

        Raises:
            _BackendError: Timeout, EOF, or a reply over the bounds or malformed.
        """
        if not self._replies and self._error is None:
            await self._wait(timeout)
        if self._replies:
            return self._replies.popleft()
        if self.expired:
            raise _BackendError(f"no complete reply within {timeout:g}s")
        raise self._error or _BackendError("no reply")

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Upgrade the connection to TLS (after the backend's 220 to STARTTLS)."""
        transport = self.transport
        assert transport is not None
        if self._replies or self._buffer:
            raise _BackendError("bytes after the 220 to STARTTLS")  # RFC 3207 5 (injection)
        tls = await asyncio.get_running_loop().start_tls(
            transport, self, context, server_hostname=server_hostname
        )
        if tls is None:
            raise _BackendError("connection closed during the TLS handshake")
        self.transport = tls

    def send_raw(self, data: bytes) -> None:
        transport = self.transport
        if self._error is not None or transport is None or transport.is_closing():
            raise _BackendError(f"writing: {self._error or 'connection closed'}")
        transport.write(data)

    async def command(self, line: str, timeout: float) -> _Reply:
        """Send one command line (no CRLF) and read its reply."""
        self.send_raw(line.encode("utf-8") + b"\r\n")
        return await self.read_reply(timeout)

    async def _write(self, data: bytes, timeout: float) -> None:
        self.send_raw(data)
        if self._paused:
            # Flow control: wait for the backend to take it, at most ``timeout``.
            await self._wait(timeout, drain=True)
            if self.expired:
                raise _BackendError(f"the backend took nothing for {timeout:g}s")
            if self._error is not None:
                raise _BackendError(f"writing the message: {self._error}")

    async def send_message(self, chunks: AsyncIterator[bytes], timeout: float) -> None:
        """After 354: write the message, dot-stuffed (RFC 5321 4.5.2), and the final dot."""
        stuffer = _DotStuffer()
        pending = b""
        async for chunk in chunks:
            if pending:
                await self._write(pending, timeout)
            pending = stuffer.feed(chunk)
        # The last piece and the final dot in one write: one send() less per message.
        await self._write(pending + stuffer.end(), timeout)  # a failure shows in the reply

    async def send_whole(self, message: bytes, chunking: bool, timeout: float) -> None:
        """A message held in memory in one write: ``BDAT n LAST`` or, after 354, stuffed."""
        if chunking:
            await self._write(b"BDAT %d LAST\r\n" % len(message) + message, timeout)
            return
        stuffer = _DotStuffer()
        await self._write(stuffer.feed(message) + stuffer.end(), timeout)

    async def send_chunks(self, chunks: AsyncIterator[bytes], timeout: float) -> _Reply | None:
        """BDAT (RFC 3030): each chunk as it is, the last one with LAST.

        Saves DATA's 354 round trip and the dot-stuffing. Returns the refusal of a BDAT before
        the last (the transaction is then void), or None once ``BDAT n LAST`` was written: its
        reply (per recipient, for LMTP) is read as after DATA's final dot.
        """
        pending: bytes | None = None
        async for chunk in chunks:
            if pending is not None:
                # One chunk behind, to know which one is the last.
                await self._write(b"BDAT %d\r\n" % len(pending) + pending, timeout)
                reply = await self.read_reply(timeout)
                if reply.code // 100 != 2:
                    return reply
            pending = chunk
        last = pending or b""
        await self._write(b"BDAT %d LAST\r\n" % len(last) + last, timeout)
        return None


class _DotStuffer:
    """Dot-stuff a message given in chunks; a line start may fall on a chunk boundary."""

    __slots__ = ("_at_line_start", "_last")

    def __init__(self) -> None:
        self._at_line_start = True
        self._last = b"\n"

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        # After any LF, bare or not: a lenient backend may take a bare LF as a line end and
        # "\n.\r\n" as the end of the message (SMTP smuggling); a stuffed dot is harmless.
        out = chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk[:1] == b".":
            out = b"." + out
        self._at_line_start = chunk[-1:] == b"\n"
        self._last = chunk[-2:] if len(chunk) > 1 else self._last[-1:] + chunk
        return out

    def end(self) -> bytes:
        return b".\r\n" if self._last.endswith(b"\r\n") else b"\r\n.\r\n"
