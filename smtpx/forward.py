"""Forwarding: relay each transaction to a backend MTA or mail store before the client's reply.

``Forward(url)`` is a handler and a set of session hooks that follows the client's
transaction on a backend, as Postfix's before-queue ``smtpd_proxy_filter`` does:

* at MAIL it takes a backend connection from a bounded pool and sends MAIL; the backend's
  refusal is the client's reply;
* each RCPT is sent when it arrives; a recipient the backend refuses is refused to the client
  then and there;
* after DATA the message goes to the backend and the backend's reply is the client's: 2xx
  only when the backend accepted it, its own 4xx/5xx passed on (code and enhanced code, text
  checked and re-wrapped in a ``Response``). A backend that cannot be reached, breaks the
  protocol, or gives no complete reply within ``timeout`` (the time for a WHOLE reply, so one
  that dribbles a byte at a time is cut off too) makes it ``451 4.4.1``.

Backend URLs:

* ``smtp://host:port``: SMTP (default port 25); ``smtp://host:port?starttls=1`` upgrades the
  connection with STARTTLS first (the certificate is verified against ``host`` unless
  ``tls_context`` says otherwise; ``starttls=1`` with a backend that does not offer it fails).
* ``lmtp://host:port`` (default port 24) and ``lmtp+unix:///path/to/socket``: LMTP (RFC 2033).
  After the message the backend answers once per recipient. With LMTP on the front too
  (``Server(lmtp=True)``) each recipient gets exactly the backend's reply for it
  (``PerRecipient``); a missing or malformed reply makes ``451 4.4.1`` for that recipient and
  the ones after it, and the connection is closed, never retried (no duplicate deliveries).
  With SMTP on the front there is only one reply to give: ``250`` when the backend accepted
  every recipient, else its first failure (a 4xx one before a 5xx one). A partial acceptance
  therefore makes the client retry (or bounce) recipients that were delivered: a duplicate is
  preferred to a loss, as an SMTP 250 would claim responsibility for recipients that failed
  and LMTP has no queue to bounce from. It is logged with the recipients concerned.

Only the parameters the backend advertised in its EHLO/LHLO reply are passed on, each
re-encoded from its parsed value and never copied as raw text: ``SIZE``, ``BODY``,
``SMTPUTF8``, DSN's ``RET``, ``ENVID``, ``NOTIFY`` and ``ORCPT`` (RFC 1870, 6152, 6531, 3461),
and ``AUTH=`` (RFC 4954 5), which becomes ``AUTH=<>`` unless the client authenticated.

Connections come from a bounded pool (``pool_size``) and are reused across transactions; one
whose transaction ended without a message (RSET, HELO, a new MAIL, QUIT, the client leaving)
is reset with RSET before it goes back. Idle ones are closed after ``idle_timeout``. When the
pool is exhausted a MAIL waits at most ``timeout`` for a free connection, then gets
``451 4.4.1``; nothing blocks the event loop. A pooled connection that the backend closed
meanwhile is found at MAIL (the command fails) and replaced once; nothing is ever re-sent
after the message was, so a failure then cannot deliver twice.

Why not aiosmtplib (the issue's suggestion): read in its source (5.1.3, as installed), it
has no LMTP (no LHLO; its DATA reads exactly one reply, so the per-recipient replies of
RFC 2033 4.2 would be lost or misread), it takes the message as one ``bytes`` object and
copies it twice (line-end normalisation, which also alters a message with a bare CR, and
dot-stuffing by regex), so a message cannot be streamed, and it bounds a reply's size
(32 KiB) but not its line count. What is needed here is small: one command, one bounded
reply, a deadline per whole reply; so this module has its own client on asyncio streams and
no extra dependency (so there is no ``smtpx[forward]`` extra either).

The message goes by BDAT (RFC 3030) when the backend announces CHUNKING (Postfix and
Dovecot do): one round trip less than DATA's 354, and no dot-stuffing; else by DATA,
dot-stuffed after every LF (a lenient backend must not see an end of data in a bare LF).

Use one ``Forward`` per ``Server`` (transactions are keyed by connection id). Pass it as the
handler, or, so that other hooks (e.g. ``filter_recipient_domains``) decide before the
backend sees a recipient, as the last entry of ``hooks`` with ``new_handler(fwd.data)`` as the
handler (the CLI does this). If a hook after it refuses a recipient the backend already
took, the message gets ``451 4.3.0`` and is never sent (logged). It needs the
``disconnect`` hook of ``smtpx.hooks``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._xtext import decode_xtext, encode_xtext
from .address import Address
from .envelope import Envelope
from .hooks import Params, SessionView
from .responses import PerRecipient, Response

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REPLY_LINES",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "FORWARD_FAILED",
    "BackendURL",
    "Forward",
    "parse_backend_url",
]

log = logging.getLogger("smtpx.forward")

DEFAULT_TIMEOUT = 60.0
"""Seconds for a whole backend reply (and for connecting, and for a free pool slot)."""
DEFAULT_POOL_SIZE = 20
"""Backend connections open at once, per ``Forward`` (so per worker process)."""
DEFAULT_IDLE_TIMEOUT = 10.0
"""Seconds an unused pooled connection stays open."""
DEFAULT_MAX_REPLY_BYTES = 8192
"""Bytes in one backend reply, all lines together (RFC 5321 4.5.3.1.5: a line is 512)."""
DEFAULT_MAX_REPLY_LINES = 40
"""Lines in one backend reply (an EHLO reply is about a dozen)."""

FORWARD_FAILED = Response(451, "4.4.1", "Requested action aborted: backend not available")
"""The reply when the backend is unreachable, silent, too slow or broken (RFC 3463 4.4.1)."""
_MISMATCH = Response(451, "4.3.0", "Requested action aborted: recipients out of step")

_CHUNK = 65536
_SWEEP_EVERY = 1.0
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


class _BackendError(Exception):
    """The backend failed (unreachable, closed, timed out, malformed or oversized reply)."""


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A parsed backend URL.

    Attributes:
        lmtp: The backend speaks LMTP (RFC 2033), else SMTP.
        host: Host name or address; "" for a Unix socket.
        port: TCP port; 0 for a Unix socket.
        path: The Unix socket's path, or "".
        starttls: Upgrade with STARTTLS before the first transaction (SMTP only).
    """

    lmtp: bool
    host: str
    port: int
    path: str = ""
    starttls: bool = False

    def __str__(self) -> str:
        if self.path:
            return f"lmtp+unix://{self.path}"
        scheme = "lmtp" if self.lmtp else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{'?starttls=1' if self.starttls else ''}"


def parse_backend_url(url: str) -> BackendURL:
    """Parse ``smtp://host[:port][?starttls=1]``, ``lmtp://host[:port]`` or ``lmtp+unix:///path``.

    Raises:
        ValueError: Another scheme, no host, a bad port, an unknown query parameter, or
            ``starttls`` with LMTP; the message is one line.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "lmtp", "lmtp+unix"):
        raise ValueError(f"{url!r}: the scheme must be smtp://, lmtp:// or lmtp+unix://")
    if parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: no user, password or #fragment allowed")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(f"{url!r}: cannot read the query") from None
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter {sorted(unknown)[0]!r}")
    starttls = False
    if "starttls" in query:
        value = query["starttls"][-1].lower()
        if value not in ("0", "1", "yes", "no", "true", "false"):
            raise ValueError(f"{url!r}: starttls must be 1 or 0")
        starttls = value in ("1", "yes", "true")
    if scheme == "lmtp+unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query:
            raise ValueError(f"{url!r}: write lmtp+unix:///absolute/path/to/socket")
        return BackendURL(lmtp=True, host="", port=0, path=parts.path)
    if parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: no path allowed after host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number 1..65535") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{url!r}: no host")
    if starttls and scheme == "lmtp":
        raise ValueError(f"{url!r}: starttls is for smtp:// backends")
    return BackendURL(
        lmtp=scheme == "lmtp",
        host=host,
        port=port or (24 if scheme == "lmtp" else 25),
        starttls=starttls,
    )


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


async def _message_chunks(envelope: Envelope) -> AsyncIterator[bytes]:
    """The message in pieces of about ``_CHUNK`` bytes, never held whole.

    ``envelope.chunks()`` reads a spooled message from its file in a worker thread; short
    pieces (the prepended headers come apart) are joined so that each BDAT carries a full
    chunk.
    """
    pending = b""
    async for piece in envelope.chunks(_CHUNK):
        if not pending and len(piece) >= _CHUNK:
            yield piece
            continue
        pending += piece
        if len(pending) >= _CHUNK:
            yield pending
            pending = b""
    if pending:
        yield pending


class _PoolExhausted(_BackendError):
    pass


class _Pool:
    """A bounded set of backend connections; idle ones kept LIFO (the warmest first)."""

    def __init__(self, forward: Forward) -> None:
        self._fw = forward
        self._idle: list[_Backend] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Backend | None]] = collections.deque()

    @property
    def open(self) -> int:
        return self._open

    async def get(self) -> _Backend:
        while self._idle:
            backend = self._idle.pop()
            if not backend.closed:
                return backend
            self._drop(backend)
        if self._open >= self._fw.pool_size:
            await _in_task()  # for _timeout below
            waiter: asyncio.Future[_Backend | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with _timeout(self._fw.timeout):
                    got = await waiter
            except TimeoutError:
                raise _PoolExhausted(f"no free connection within {self._fw.timeout:g}s") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if got is not None:
                return got
        self._open += 1  # the slot is ours while we connect
        try:
            return await self._fw._connect()
        except BaseException:
            self._open -= 1
            self._wake()
            raise

    def put(self, backend: _Backend) -> None:
        """Give back a connection that is between transactions."""
        if backend.closed:
            self._drop(backend)
            return
        backend.used = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(backend)
                return
        backend.idle_since = time.monotonic()
        self._idle.append(backend)

    def _drop(self, backend: _Backend) -> None:
        backend.close()
        self._open -= 1
        self._wake()

    def discard(self, backend: _Backend) -> None:
        """Close a connection that is broken or in an unknown state."""
        self._drop(backend)

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # a slot is free: connect
                return

    def sweep(self, now: float, idle_timeout: float) -> None:
        keep = []
        for backend in self._idle:
            if backend.closed or now - backend.idle_since >= idle_timeout:
                if not backend.closed:
                    with contextlib.suppress(OSError, RuntimeError):
                        backend.writer.write(b"QUIT\r\n")
                self._drop(backend)
            else:
                keep.append(backend)
        self._idle = keep

    def close(self) -> None:
        for backend in self._idle:
            backend.close()
        self._open -= len(self._idle)
        self._idle = []


class _Txn:
    """One client transaction mirrored on one backend connection."""

    __slots__ = ("accepted", "backend", "busy", "gone", "session", "utf8")

    def __init__(self, session: SessionView, backend: _Backend, utf8: bool) -> None:
        self.session = session
        self.backend = backend
        self.utf8 = utf8
        self.accepted: list[Address] = []
        self.busy = True  # a hook of ours is running: the session's state is in flux
        self.gone = False  # the client left while a hook was running: that hook ends it


class Forward:
    """Relay each transaction to a backend as it happens (handler + hooks, see module doc).

    Args:
        url: ``smtp://host:port[?starttls=1]``, ``lmtp://host:port`` or
            ``lmtp+unix:///path``.
        timeout: Seconds for connecting, for each whole backend reply, for the backend to
            take each chunk of the message, and for a free pool slot; over it, ``451 4.4.1``.
        pool_size: At most this many backend connections at once (so at most this many
            transactions in flight); more wait up to ``timeout``.
        idle_timeout: Seconds before an unused pooled connection is closed.
        ehlo_name: The name sent in EHLO/LHLO (default ``localhost``).
        tls_context: For ``starttls=1``: the client context (default: system CAs, host name
            checked).
        max_reply_bytes: Bound on one backend reply, all lines; over it the backend counts
            as failed.
        max_reply_lines: Bound on the lines of one backend reply, likewise.

    Raises:
        ValueError: A bad URL or option.
    """

    def __init__(
        self,
        url: str | BackendURL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ehlo_name: str = "localhost",
        tls_context: ssl.SSLContext | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        max_reply_lines: int = DEFAULT_MAX_REPLY_LINES,
    ) -> None:
        self.url = url if isinstance(url, BackendURL) else parse_backend_url(url)
        if not timeout > 0 or pool_size < 1 or not idle_timeout > 0:
            raise ValueError("timeout and idle_timeout must be > 0, pool_size >= 1")
        if max_reply_bytes < 512 or max_reply_lines < 1:
            raise ValueError("max_reply_bytes must be >= 512 and max_reply_lines >= 1")
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.idle_timeout = float(idle_timeout)
        self.ehlo_name = ehlo_name
        self.tls_context = tls_context
        self._limits = (max_reply_bytes, max_reply_lines)
        self._txns: dict[int, _Txn] = {}
        self._inflight: dict[int, bool] = {}  # connection id -> left during its MAIL
        self._pool: _Pool | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Forward({str(self.url)!r})"

    # ------------------------------------------------------------------ connections
    def _the_pool(self) -> _Pool:
        # Made in the running loop (and after a --workers fork), never at construction.
        pool = self._pool
        if pool is None:
            pool = self._pool = _Pool(self)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return pool

    async def _connect(self) -> _Backend:
        url = self.url
        await _in_task()  # for _timeout below
        try:
            async with _timeout(self.timeout):
                if url.path:
                    reader, writer = await asyncio.open_unix_connection(
                        url.path, limit=self._limits[0]
                    )
                else:
                    reader, writer = await asyncio.open_connection(
                        url.host, url.port, limit=self._limits[0]
                    )
        except TimeoutError:
            raise _BackendError(f"cannot connect to {url} within {self.timeout:g}s") from None
        except OSError as exc:
            raise _BackendError(f"cannot connect to {url}: {exc.strerror or exc}") from None
        backend = _Backend(reader, writer, url.lmtp, self._limits)
        try:
            greeting = await backend.read_reply(self.timeout)
            if greeting.code != 220:
                raise _BackendError(f"greeting {greeting.code}")
            await self._hello(backend)
            if url.starttls:
                if "STARTTLS" not in backend.extensions:
                    raise _BackendError("STARTTLS is not offered")
                reply = await backend.command("STARTTLS", self.timeout)
                if reply.code != 220:
                    raise _BackendError(f"STARTTLS answered {reply.code}")
                context = self.tls_context or ssl.create_default_context()
                async with _timeout(self.timeout):
                    await writer.start_tls(context, server_hostname=url.host)
                await self._hello(backend)  # RFC 3207 4.2: forget what was learnt before
        except TimeoutError:
            backend.close()
            raise _BackendError("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            backend.close()
            raise _BackendError(f"TLS: {exc}") from None
        except BaseException:
            backend.close()
            raise
        return backend

    async def _hello(self, backend: _Backend) -> None:
        reply = await backend.command(
            f"{'LHLO' if backend.lmtp else 'EHLO'} {self.ehlo_name}", self.timeout
        )
        if reply.code != 250:
            raise _BackendError(f"{'LHLO' if backend.lmtp else 'EHLO'} answered {reply.code}")
        extensions: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, value = line.partition(" ")
            extensions[keyword.upper()] = value
        backend.extensions = extensions

    async def _sweep(self) -> None:
        """Close idle connections; give back those whose transaction ended without DATA."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            for key, txn in list(self._txns.items()):
                # The core forgot the transaction (RSET, HELO, a refused message...).
                if not txn.busy and txn.session.mail_from is None:
                    del self._txns[key]
                    self._background(self._end(txn))
            pool = self._pool
            if pool is not None:
                pool.sweep(time.monotonic(), self.idle_timeout)
                if not pool.open and not self._txns:
                    return  # started again by the next MAIL

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _end(self, txn: _Txn) -> None:
        """A transaction ended without a message: RSET and give back, or close."""
        pool, backend = self._the_pool(), txn.backend
        if backend.closed:
            pool.discard(backend)
            return
        try:
            reply = await backend.command("RSET", self.timeout)
        except _BackendError as exc:
            log.info("backend %s: RSET failed (%s); closing", self.url, exc)
            pool.discard(backend)
            return
        if reply.code == 250:
            pool.put(backend)
        else:
            pool.discard(backend)

    async def aclose(self) -> None:
        """Close every pooled connection (in use ones are closed when they come back)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for txn in self._txns.values():
            txn.backend.close()
        self._txns.clear()
        if self._pool is not None:
            self._pool.close()

    # ------------------------------------------------------------------ parameters
    def _mail_params(self, session: SessionView, params: Params, ext: dict[str, str]) -> str:
        out: list[str] = []
        for key, value in params.items():
            if key == "SIZE" and "SIZE" in ext and value is not None:
                out.append(f"SIZE={int(value)}")
            elif key == "BODY" and "8BITMIME" in ext and value is not None:
                out.append(f"BODY={'8BITMIME' if value.upper() == '8BITMIME' else '7BIT'}")
            elif key == "SMTPUTF8" and "SMTPUTF8" in ext:
                out.append("SMTPUTF8")
            elif key == "RET" and "DSN" in ext and value is not None:
                out.append(f"RET={'HDRS' if value.upper() == 'HDRS' else 'FULL'}")
            elif key == "ENVID" and "DSN" in ext and value is not None:
                out.append(f"ENVID={encode_xtext(decode_xtext(value, strict=True))}")
            elif key == "AUTH" and "AUTH" in ext:
                mailbox = None
                if session.authenticated is not None and value is not None and value != "<>":
                    decoded = decode_xtext(value)
                    if decoded.isprintable():
                        mailbox = decoded
                out.append(f"AUTH={'<>' if mailbox is None else encode_xtext(mailbox)}")
        return "".join(f" {p}" for p in out)

    @staticmethod
    def _rcpt_params(params: Params, ext: dict[str, str], utf8: bool) -> str:
        if "DSN" not in ext:
            return ""
        from .protocol._dsn import parse_notify, parse_orcpt  # noqa: PLC0415 (rarely used)

        out: list[str] = []
        if params.get("NOTIFY"):
            out.append("NOTIFY=" + ",".join(parse_notify(params["NOTIFY"])))
        if params.get("ORCPT"):
            orcpt = parse_orcpt(params["ORCPT"], utf8=utf8)
            if orcpt.addr_type == "rfc822":
                out.append(f"ORCPT=rfc822;{encode_xtext(orcpt.address)}")
            elif "SMTPUTF8" in ext:
                out.append(f"ORCPT=utf-8;{_encode_unitext(orcpt.address)}")
        return "".join(f" {p}" for p in out)

    # ------------------------------------------------------------------ hooks
    async def mail(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        """MAIL: take a backend connection and send MAIL; its refusal is the client's."""
        cid = session.connection_id
        stale = self._txns.pop(cid, None)
        if stale is not None:
            await self._end(stale)
        self._inflight[cid] = False
        txn = None
        try:
            response, txn = await self._mail(session, address, params)
        finally:
            gone = self._inflight.pop(cid, False)
            if txn is not None and gone:
                # The client left while MAIL was on its way: never keep the connection.
                self._background(self._end(txn))
            elif txn is not None:
                txn.busy = False
                self._txns[cid] = txn
        return response

    async def _mail(
        self, session: SessionView, address: Address, params: Params
    ) -> tuple[Response | None, _Txn | None]:
        pool = self._the_pool()
        for attempt in (1, 2):
            try:
                backend = await pool.get()
            except _BackendError as exc:
                log.warning("backend %s: %s; MAIL gets 451 4.4.1", self.url, exc)
                return FORWARD_FAILED, None
            reused = backend.used
            txn = _Txn(session, backend, "SMTPUTF8" in params)
            try:
                line = f"MAIL FROM:<{address.address}>" + self._mail_params(
                    session, params, backend.extensions
                )
                reply = await backend.command(line, self.timeout)
                if reply.code == 421:
                    raise _BackendError("421 at MAIL")
            except _BackendError as exc:
                pool.discard(backend)
                # A pooled connection the backend closed meanwhile: one fresh try. Nothing
                # of the message was sent on it, so this cannot deliver twice.
                if reused and attempt == 1 and not isinstance(exc, _PoolExhausted):
                    log.info("backend %s: pooled connection failed at MAIL (%s)", self.url, exc)
                    continue
                log.warning("backend %s: %s; MAIL gets 451 4.4.1", self.url, exc)
                return FORWARD_FAILED, None
            except ValueError:  # a parameter that does not decode (the core checked them)
                pool.put(backend)
                return FORWARD_FAILED, None
            if reply.code // 100 == 2:
                return None, txn
            pool.put(backend)  # the refused MAIL left no transaction to reset
            return _relay(reply), None
        return FORWARD_FAILED, None  # pragma: no cover - the loop returns

    async def rcpt(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        """RCPT: send it on; the backend's refusal is the client's."""
        txn = self._txns.get(session.connection_id)
        if txn is None:
            return FORWARD_FAILED
        txn.busy = True
        try:
            backend = txn.backend
            try:
                line = f"RCPT TO:<{address.address}>" + self._rcpt_params(
                    params, backend.extensions, txn.utf8
                )
            except Exception:
                return FORWARD_FAILED
            try:
                reply = await backend.command(line, self.timeout)
                if reply.code == 421 or reply.code // 100 == 3:
                    raise _BackendError(f"{reply.code} at RCPT")
            except _BackendError as exc:
                log.warning("backend %s: %s; RCPT gets 451 4.4.1", self.url, exc)
                self._txns.pop(session.connection_id, None)
                self._the_pool().discard(backend)
                return FORWARD_FAILED
            if reply.code // 100 == 2:
                txn.accepted.append(address)
                return None
            return _relay(reply)
        finally:
            txn.busy = False
            if txn.gone and self._txns.get(session.connection_id) is txn:
                del self._txns[session.connection_id]
                self._background(self._end(txn))

    async def disconnect(self, session: SessionView, /) -> None:
        """The client left: end its transaction, if any."""
        cid = session.connection_id
        if cid in self._inflight:
            self._inflight[cid] = True  # MAIL is still on its way: mail() ends it
        txn = self._txns.get(cid)
        if txn is None:
            return
        if txn.busy:
            txn.gone = True  # one command at a time: the running hook ends it
            return
        del self._txns[cid]
        await self._end(txn)

    # ------------------------------------------------------------------ handler
    async def data(self, envelope: Envelope) -> Response:
        """Send the message; the backend's reply (one per recipient for LMTP) is the client's."""
        txn = self._txns.pop(envelope.connection_id, None)
        if txn is None:
            return FORWARD_FAILED
        txn.busy = True
        pool, backend = self._the_pool(), txn.backend
        if [a.address for a in txn.accepted] != [a.address for a in envelope.rcpt_to]:
            # Another hook refused a recipient the backend took: never deliver to it.
            log.error(
                "backend %s: recipients differ from the client's (is Forward the last hook?);"
                " message refused",
                self.url,
            )
            await self._end(txn)
            return _MISMATCH
        try:
            if "CHUNKING" in backend.extensions:
                refused = await backend.send_chunks(_message_chunks(envelope), self.timeout)
            else:
                refused = await backend.command("DATA", self.timeout)
                if refused.code == 354:
                    refused = None
                    await backend.send_message(_message_chunks(envelope), self.timeout)
            if refused is not None:
                if refused.code // 100 in (4, 5) and refused.code != 421:
                    await self._end(txn)
                    return _relay(refused)
                raise _BackendError(f"{refused.code} to DATA or BDAT")
        except _BackendError as exc:
            log.warning("backend %s: %s; message gets 451 4.4.1", self.url, exc)
            pool.discard(backend)
            return FORWARD_FAILED
        if not backend.lmtp:
            try:
                reply = await backend.read_reply(self.timeout)
                if reply.code // 100 == 3:
                    raise _BackendError(f"{reply.code} after the message")
            except _BackendError as exc:
                log.warning("backend %s: %s; message gets 451 4.4.1", self.url, exc)
                pool.discard(backend)
                return FORWARD_FAILED
            if reply.code == 421:
                pool.discard(backend)
                return FORWARD_FAILED
            pool.put(backend)
            return _relay(reply)
        return await self._lmtp_replies(envelope, txn)

    async def _lmtp_replies(self, envelope: Envelope, txn: _Txn) -> Response:
        pool, backend = self._the_pool(), txn.backend
        replies: list[Response] = []
        broken = False
        for rcpt in txn.accepted:
            if broken:
                replies.append(FORWARD_FAILED)
                continue
            try:
                reply = await backend.read_reply(self.timeout)
                if reply.code // 100 == 3 or reply.code == 421:
                    raise _BackendError(f"{reply.code} after the message")
                replies.append(_relay(reply))
            except _BackendError as exc:
                log.warning(
                    "backend %s: %s; 451 4.4.1 for <%s> and the recipients after it",
                    self.url,
                    exc,
                    rcpt.address,
                )
                broken = True
                replies.append(FORWARD_FAILED)
        if broken:
            pool.discard(backend)
        else:
            pool.put(backend)  # put() closes it if an extra reply is waiting
        if envelope.lmtp:
            return PerRecipient(replies)
        failures = [r for r in replies if not r.is_success]
        if not failures:
            return replies[0]
        if len(failures) < len(replies):
            log.warning(
                "backend %s: accepted %s but not %s; SMTP has one reply, so the client will"
                " retry (a duplicate for the accepted ones)",
                self.url,
                [a.address for a, r in zip(txn.accepted, replies, strict=True) if r.is_success],
                [a.address for a, r in zip(txn.accepted, replies, strict=True) if not r.is_success],
            )
        temporary = [r for r in failures if r.code // 100 == 4]
        return (temporary or failures)[0]


def _relay(reply: _Reply) -> Response:
    if reply.code // 100 not in (2, 4, 5):
        return FORWARD_FAILED
    return reply.response()


def _encode_unitext(address: str) -> str:
    # RFC 6533 3: utf-8-addr-unitext; "+", "=", "\\", space and controls as \\x{HEX}.
    return "".join(
        c if (c > "\x7f" or "\x21" <= c <= "\x7e") and c not in "+=\\" else f"\\x{{{ord(c):02X}}}"
        for c in address
    )
