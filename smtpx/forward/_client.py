"""The backend client on asyncio streams: one connection, commands, bounded replies, the message."""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from smtpx.responses import Response

from ._chunks import _CHUNK

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


if sys.version_info >= (3, 11):

    async def _start_tls(
        writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str
    ) -> None:
        """Upgrade a client stream to TLS."""
        await writer.start_tls(context, server_hostname=server_hostname)

else:  # pragma: no cover - Python 3.10 has no StreamWriter.start_tls

    async def _start_tls(
        writer: asyncio.StreamWriter, context: ssl.SSLContext, server_hostname: str
    ) -> None:
        """Upgrade a client stream to TLS through ``loop.start_tls``.

        The stream's protocol keeps feeding the reader through the TLS layer; only the writer
        must learn the new transport (added to asyncio in 3.11, CPython gh-79156).
        """
        transport = writer.transport
        tls = await asyncio.get_running_loop().start_tls(
            transport, transport.get_protocol(), context, server_hostname=server_hostname
        )
        setattr(writer, "_transport", tls)  # noqa: B010 (a private slot, 3.10 only)


class _BackendError(Exception):
    """The backend failed (unreachable, closed, timed out, malformed or oversized reply)."""


@dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]

    def response(self) -> Response:
        """The reply re-wrapped as smtpx's own (text checked when it was read)."""
        first = self.lines[0]
        match = _ENHANCED.match(first)
        cls = str(self.code // 100)
        enhanced = f"{cls}.0.0"
        texts = list(self.lines)
        if match is not None and match.group(1) == cls:
            enhanced = match.group(0).strip()
            # Every line may repeat it (Postfix does); it is put back by Response.lines().
            texts = [t[len(enhanced) :].lstrip(" ") if t.startswith(enhanced) else t for t in texts]
        return Response(self.code, enhanced, "\n".join(texts))


class _Backend:
    """One connection to the backend: send a command, read one bounded reply."""

    __slots__ = (
        "_limits",
        "expired",
        "extensions",
        "idle_since",
        "lmtp",
        "reader",
        "used",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        lmtp: bool,
        limits: tuple[int, int],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.lmtp = lmtp
        self.extensions: dict[str, str] = {}
        self.idle_since = time.monotonic()
        self.used = False  # has carried a transaction: a failure at MAIL may be a stale one
        self.expired = False
        self._limits = limits

    @property
    def closed(self) -> bool:
        """Closed, or holding input nobody asked for (an extra reply would be misread)."""
        return (
            self.writer.is_closing()
            or self.reader.at_eof()
            or bool(getattr(self.reader, "_buffer", b""))
        )

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    def _expire(self) -> None:
        # The deadline of a whole reply (or of the backend taking the message) passed: abort
        # the connection, which ends the read or the drain that waits on it. A timer, not
        # asyncio.timeout: the session runs a hook's first step outside any task, and a
        # timer costs less than a cancellation per reply.
        self.expired = True
        self.writer.transport.abort()

    async def read_reply(self, timeout: float) -> _Reply:
        """Read one whole reply within ``timeout`` seconds.

        Raises:
            _BackendError: Timeout, EOF, or a reply over the bounds or malformed.
        """
        timer = asyncio.get_running_loop().call_later(timeout, self._expire)
        try:
            return await self._read_reply()
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            if self.expired:
                raise _BackendError(f"no complete reply within {timeout:g}s") from None
            raise _BackendError(f"reading a reply: {type(e).__name__}: {e}") from None
        finally:
            timer.cancel()

    async def _read_reply(self) -> _Reply:
        max_bytes, max_lines = self._limits
        total = 0
        code = b""
        lines: list[str] = []
        while True:
            raw = await self.reader.readuntil(b"\n")  # bounded by the reader's limit
            total += len(raw)
            if total > max_bytes or len(lines) >= max_lines:
                raise _BackendError("reply over the size or line bounds")
            if not raw.endswith(b"\r\n"):
                raise _BackendError("reply line without CRLF")
            match = _LINE.match(raw[:-2])
            if match is None or (code and match.group(1) != code):
                raise _BackendError(f"malformed reply line {raw[:40]!r}")
            code = match.group(1)
            sep, body = match.group(2), match.group(3)
            if body and not sep:
                raise _BackendError(f"malformed reply line {raw[:40]!r}")
            # RFC 5321 4.2: reply text is ASCII (UTF-8 only with SMTPUTF8, RFC 6531 3.7.4);
            # anything else is relayed as "?", never as raw bytes.
            if body.isascii():
                text = body.decode("ascii")
            else:
                text = body.decode("utf-8", "replace").encode("ascii", "replace").decode()
            if _BAD_TEXT.search(text):
                raise _BackendError("control character in the reply text")
            lines.append(text)
            if sep != b"-":
                return _Reply(int(code), tuple(lines))

    async def command(self, line: str, timeout: float) -> _Reply:
        """Send one command line (no CRLF) and read its reply."""
        try:
            self.writer.write(line.encode("utf-8") + b"\r\n")
        except (OSError, RuntimeError) as exc:
            raise _BackendError(f"writing: {exc}") from None
        return await self.read_reply(timeout)

    async def _write(self, data: bytes, timeout: float) -> None:
        writer = self.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size() > _CHUNK:
                # Flow control: wait for the backend to take it, at most ``timeout``.
                timer = asyncio.get_running_loop().call_later(timeout, self._expire)
                try:
                    await writer.drain()
                finally:
                    timer.cancel()
        except (OSError, RuntimeError) as exc:
            if self.expired:
                raise _BackendError(f"the backend took nothing for {timeout:g}s") from None
            raise _BackendError(f"writing the message: {exc}") from None

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
