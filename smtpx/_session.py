"""One client connection: transport <-> protocol.Connection <-> handler chain.

An ``asyncio.BufferedProtocol`` that receives into the server's one shared buffer (the loop
calls ``get_buffer`` and ``buffer_updated`` back to back, so no two connections ever use it at
once) and writes one batch of replies per read; no timer of its own. Deadlines are checked by
the server's single sweeper (``Server._sweep``).

A connection goes through these phases, each bounded by ``Server.timeout``:

1. PROXY header (``proxy_on`` only): read before anything is said, through a duplicate of
   the socket so that not one byte after the header is consumed (an implicit-TLS ClientHello
   may follow it in the same segment).
2. TLS handshake (``tls_always_on`` only), through the loop's public ``start_tls``.
3. Greeting and the SMTP dialogue, driven by the sans-IO ``protocol.Connection``; STARTTLS
   upgrades the transport in the middle of it (RFC 3207).

Session hooks (``smtpx.hooks``) and AUTH (RFC 4954) run where the core holds a command
(``State.AWAIT_REPLY``): the hook's or the SASL step's first step runs inline, and only one that
waits becomes a task (``_handler_task``), after which ``_process`` picks up the held input. The
server is seen through ``smtpx._server_view.ServerView`` only; this module never imports
``smtpx.server``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from . import auth as A
from . import responses as R
from ._proxy import ProxyError, ProxyHeader, ProxyHeaderReader
from ._server_view import ServerView
from ._spool import DRAIN_STEP, MessageBuffer
from .address import Address
from .envelope import Envelope, TLSInfo
from .handler import HandlerReturnError
from .hooks import HookCall, check_hook_reply
from .protocol import (
    NEED_DATA,
    AuthRequest,
    AuthResponse,
    CloseConnection,
    Connection,
    ConnectionClosed,
    Greeted,
    MailFrom,
    Message,
    RcptTo,
    StartTLS,
    State,
    XClient,
)
from .protocol._state import S_AWAIT_REPLY, S_BDAT, S_CLOSED, S_DATA, S_STARTTLS
from .responses import PerRecipient, Response, ResponseError

__all__ = ["ClientInfo", "Session", "in_networks", "tls_info"]


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One connection as ``Server.clients()`` reports it.

    Attributes:
        connection_id: Counts up from 1 per server.
        remote_addr: The client (as PROXY or XCLIENT told us, else the TCP peer).
        state: Where the dialogue is; None before the greeting (PROXY header, TLS handshake).
        helo: The HELO/EHLO name, "" before it.
        tls: Whether the connection is encrypted.
    """

    connection_id: int
    remote_addr: tuple[str, int]
    state: State | None
    helo: str
    tls: bool


def _addr(value: object) -> tuple[str, int]:
    # asyncio gives (host, port) for IPv4 and (host, port, flow, scope) for IPv6.
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return ("", 0)


def tls_info(transport: asyncio.BaseTransport) -> TLSInfo | None:
    """Describe the TLS layer of ``transport``, or None for plaintext."""
    obj = transport.get_extra_info("ssl_object")
    if not isinstance(obj, ssl.SSLObject | ssl.SSLSocket):
        return None
    cipher = obj.cipher()
    peer = obj.getpeercert()
    return TLSInfo(
        version=obj.version() or "",
        cipher=cipher[0] if cipher else "",
        bits=cipher[2] if cipher else 0,
        peer_cert=dict(peer) if peer else None,
        server_name=obj.server_hostname,
    )


def in_networks(
    host: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """True when ``host`` (an IP string) lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


@types.coroutine
def _yield_future(future: Any) -> Generator[Any, None, None]:
    """Yield ``future`` (already marked blocking by its own ``__await__``) to the running task."""
    yield future


async def _resume(coro: Coroutine[Any, Any, None], blocked_on: Any) -> None:
    """Finish ``coro``, whose first step already ran outside a task, as a task would.

    ``blocked_on`` is what that step yielded: the future it waits for (``await fut`` yields
    the future itself) or None for a bare yield such as ``asyncio.sleep(0)``.
    """
    while True:
        try:
            if blocked_on is None:
                await asyncio.sleep(0)
            elif not asyncio.isfuture(blocked_on):
                # What asyncio.Task does with a bad yield (e.g. another framework's awaitable):
                # throw an error into the coroutine, which then fails like any handler error.
                raise RuntimeError(f"bad yield in a handler: {blocked_on!r}")
            elif blocked_on.get_loop() is not asyncio.get_running_loop():
                # A future of a loop that is not running here would never be done.
                raise RuntimeError(f"a handler awaits a future of another loop: {blocked_on!r}")
            elif not blocked_on.done():
                # Hand the future to this task as ``coro`` would have in a task of its own: one
                # wake-up when it is done, and cancelling the task cancels the future, as
                # asyncio does. ``coro`` reads the outcome itself when it resumes.
                await _yield_future(blocked_on)
        except (asyncio.CancelledError, Exception) as exc:
            # Cancelled, or the wait itself failed (e.g. a future of another loop): the
            # coroutine gets the exception, so that its own guard answers the client.
            try:
                blocked_on = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            return


# RFC 3463 4.7.0 (security policy), as Postfix answers its anvil's connection limit.
_TOO_MANY_FROM_IP = Response(421, "4.7.0", "Too many connections from your address, try later")
# RFC 3463 4.4.2 (bad connection): the connection lasted longer than the server allows.
_SESSION_EXPIRED = Response(421, "4.4.2", "Session time limit reached, closing connection")

_DISCONNECTS: set[asyncio.Future[None]] = set()

# Input held while a reply is owed before the client is paused (flow control, RFC 2920).
_MAX_HELD = 64 * 1024
# Events whose reply the core has queued by itself unless it holds them for a hook: _process
# skips its other checks for them (by exact type: anything else takes the long way).
_REPLIED_EVENTS = frozenset({Greeted, MailFrom, RcptTo})


class _View:
    """The read-only ``smtpx.hooks.SessionView`` of one session, given to hooks."""

    __slots__ = ("_s",)

    def __init__(self, session: Session) -> None:
        self._s = session

    @property
    def connection_id(self) -> int:
        return self._s.connection_id

    @property
    def remote_addr(self) -> tuple[str, int]:
        return self._s.remote_addr

    @property
    def local_addr(self) -> tuple[str, int]:
        return self._s.local_addr

    @property
    def helo(self) -> str:
        conn = self._s.conn
        return "" if conn is None else conn.helo

    @property
    def esmtp(self) -> bool:
        conn = self._s.conn
        return conn is not None and conn.esmtp

    @property
    def tls(self) -> TLSInfo | None:
        return self._s._tls

    @property
    def authenticated(self) -> str | None:
        conn = self._s.conn
        return None if conn is None else conn.authenticated

    @property
    def mail_from(self) -> Address | None:
        conn = self._s.conn
        return None if conn is None else conn.mail_from

    @property
    def rcpt_to(self) -> tuple[Address, ...]:
        conn = self._s.conn
        return () if conn is None else tuple(conn.rcpt_to)

    def __repr__(self) -> str:
        return f"<SessionView {self.connection_id} {self.remote_addr[0]}:{self.remote_addr[1]}>"


class Session(asyncio.BufferedProtocol):
    """The asyncio side of one SMTP connection."""

    __slots__ = (
        "_auth_exchange",
        "_auth_throttle",
        "_clock",
        "_close_after_reply",
        "_closing",
        "_deadline",
        "_early_tls",
        "_expired",
        "_expires_at",
        "_failed",
        "_finished",
        "_handler_task",
        "_kill_at",
        "_message",
        "_paused_reading",
        "_paused_writing",
        "_proxy_header",
        "_proxy_reader",
        "_proxy_sock",
        "_server",
        "_shutdown_requested",
        "_tls",
        "_tls_task",
        "_view",
        "_xclient",
        "conn",
        "connection_id",
        "ip_key",
        "local_addr",
        "peer_addr",
        "remote_addr",
        "transport",
    )

    def __init__(self, server: ServerView[Session], connection_id: int) -> None:
        self._server = server
        self.connection_id = connection_id
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        # remote_addr is the client as far as we know it (PROXY/XCLIENT may replace it);
        # peer_addr is the TCP peer, which is the proxy when there is one.
        self.remote_addr: tuple[str, int] = ("", 0)
        self.peer_addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)
        self._tls: TLSInfo | None = None
        self._deadline = 0.0
        # The loop's clock, bound once (see _connection_made): _touch runs on every reply.
        self._clock: Callable[[], float] = server._loop_time
        self._kill_at = 0.0
        self._expires_at = 0.0  # max_session_time: 421 at the next point between commands
        self._expired = False
        self.ip_key: str | None = None  # what the server counts this client by (per-IP limit)
        self._handler_task: asyncio.Task[None] | None = None
        # The drained bytes of a long message being received (see _stream).
        self._message: MessageBuffer | None = None
        self._tls_task: asyncio.Task[None] | None = None
        # Decrypted input the TLS layer delivered before start_tls() returned (see _received).
        self._early_tls = b""
        self._paused_reading = False
        self._paused_writing = False
        self._closing = False
        self._finished = False
        self._failed = False
        self._shutdown_requested = False
        self._close_after_reply = False
        self._proxy_reader: ProxyHeaderReader | None = None
        self._proxy_sock: socket.socket | None = None
        self._proxy_header: ProxyHeader | None = None
        self._xclient: dict[str, str | None] = {}
        self._view: _View | None = None
        self._auth_exchange: A.SaslExchange | None = None
        self._auth_throttle: A.ConnectionAuthThrottle | None = None

    @property
    def logger(self) -> logging.Logger:
        return self._server.logger

    def info(self) -> ClientInfo:
        """What ``Server.clients()`` shows of this connection."""
        conn = self.conn
        return ClientInfo(
            self.connection_id,
            self.remote_addr,
            None if conn is None else conn.state,
            "" if conn is None else conn.helo,
            self._tls is not None,
        )

    # ------------------------------------------------------------ lifecycle
    # Every callback the loop (or the server) calls is guarded: an exception that escapes one
    # is a bug, but it must cost this connection only, with a reply and its slot freed, never
    # a silent hang or a connection asyncio drops without a word (see _internal_error).
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)
        try:
            self._connection_made(self.transport)
        except Exception:
            self._internal_error("connection_made")

    def _connection_made(self, transport: asyncio.Transport) -> None:
        server = self._server
        self._clock = server._get_loop().time
        self.remote_addr = self.peer_addr = _addr(transport.get_extra_info("peername"))
        self.local_addr = _addr(transport.get_extra_info("sockname"))
        if not server._register(self):
            self.logger.warning(
                "connection %d from %s:%d refused: %d clients already connected",
                self.connection_id,
                *self.peer_addr,
                server.max_clients,
            )
            if not server.tls_always_on:
                # RFC 5321 3.8: a server may refuse a connection with 421 instead of 220.
                # An implicit-TLS client would read it as a broken handshake: just close.
                transport.write(R.ERROR_TOO_MANY_CLIENTS.wire())
            self._close()
            return
        if server.max_session_time:
            self._expires_at = server._loop_time() + server.max_session_time
        if server._shutting_down:
            self._shutdown_requested = True
        if not server.proxy_on and not self._claim_ip():
            return
        if server.proxy_on:
            self._start_proxy()
        elif server.tls_always_on:
            self._start_implicit_tls()
        else:
            self._greet()
        if sys.version_info < (3, 11) and self._paused_reading:
            # NOTE: Python 3.10's selector transport starts reading in a callback queued before
            # connection_made, ignoring a pause made in it (3.11 checks is_reading() first).
            # Bytes after the PROXY header (a ClientHello) would reach us and be lost.
            asyncio.get_running_loop().call_soon(self._pause_again)

    def _pause_again(self) -> None:
        transport = self.transport
        if transport is not None and self._paused_reading and not self._closing:
            transport.resume_reading()  # the transport believes it is paused: cycle it
            transport.pause_reading()

    def _claim_ip(self) -> bool:
        """Count this client against the per-IP limit; over it, refuse with 421 4.7.0."""
        server = self._server
        if server._claim_ip(self, self.remote_addr[0]):
            return True
        self.logger.warning(
            "connection %d from %s:%d refused: %d connections from that address already",
            self.connection_id,
            *self.remote_addr,
            server.max_clients_per_ip,
        )
        transport = self.transport
        if transport is not None and not server.tls_always_on:
            # As for max_clients: a reply instead of the greeting, but none into a TLS handshake.
            transport.write(_TOO_MANY_FROM_IP.wire())
        self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        try:
            if self.conn is not None and self.conn.state is not State.CLOSED:
                self.conn.close()
        except Exception:
            self._internal_error("connection_lost")
        finally:
            self._finish()

    def _finish(self) -> None:
        # Idempotent: a failed STARTTLS handshake may or may not report connection_lost.
        if self._finished:
            return
        self._finished = True
        self._closing = True
        message, self._message = self._message, None
        if message is not None:
            message.close()  # an abandoned upload leaves no spool file and no descriptor
        try:
            self._stop_proxy_read()
        except Exception:
            self._internal_error("closing the PROXY reader")
        finally:
            self._server._unregister(self)
            if self._server._hooks.disconnect:
                self._disconnected()

    def _disconnected(self) -> None:
        """Run the ``disconnect`` hooks in a task of their own (nothing to reply any more)."""

        async def run(calls: tuple[HookCall, ...]) -> None:
            view = self._view_of()
            for call in calls:
                try:
                    await call(view)
                except Exception:
                    self.logger.exception(
                        "connection %d: a disconnect hook failed", self.connection_id
                    )

        try:
            task = asyncio.get_running_loop().create_task(run(self._server._hooks.disconnect))
        except RuntimeError:  # the loop is gone: nothing is left to release
            return
        _DISCONNECTS.add(task)  # a strong reference until it is done
        task.add_done_callback(_DISCONNECTS.discard)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server._recv_view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self._received(self._server._recv_view[:nbytes].tobytes())
        except Exception:
            self._internal_error("reading")

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except Exception:
            self._internal_error("reading")

    def _received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self._closing:
            return
        state = conn.state
        if state is S_STARTTLS and self._tls_task is not None:
            # The TLS layer hands over application data that came with the end of the
            # handshake (TLS 1.3: a command in the same segment as the client's Finished)
            # before start_tls() returns to _upgrade. It is encrypted input, not plaintext
            # sent after STARTTLS (that stays with the paused plain transport and the core):
            # keep it for the core, which gets it once it has started over (RFC 3207 4.2).
            self._early_tls += data
            return
        if state is S_DATA or state is S_BDAT:
            self._touch()  # in a message the timeout bounds silence, not the whole upload
        conn.receive_data(data)
        if state is S_AWAIT_REPLY:
            if conn.buffered > _MAX_HELD:
                self._set_reading(False)  # resumed once the handler's reply is out
            return
        if self._message is not None or conn.message_reader is not None:
            self._stream()  # before _process: a refused message's file goes before its reply
        self._process()
        if self._message is not None:
            self._stream()  # and after: a chunk refused or reset in _process (BDAT, RSET)

    def _stream(self) -> None:
        """Move a long message's judged bytes out of the reader, to memory or a spool file.

        Every ``DRAIN_STEP`` bytes, so that a message under it is never copied; a message
        that ended without a Message event for us (refused by the core, RSET, a new one
        begun) has its buffer, and spool file, dropped. A message that ended well keeps its
        buffer for the Message event that ``_process`` is about to take.
        """
        conn = self.conn
        assert conn is not None
        reader = conn.message_reader
        buf = self._message
        if buf is not None and buf.source is not reader and not buf.delivered():
            self._message = None
            buf.close()
            buf = None
        if reader is None or self._closing:
            return
        size = reader.size
        if size - (0 if buf is None else buf.mark) < DRAIN_STEP:
            return
        server = self._server
        if buf is None:
            buf = self._message = MessageBuffer(
                reader, server._memory_budget, server.spool_threshold, server.spool_dir
            )
        buf.mark = size
        buf.add(reader.drain())

    def eof_received(self) -> bool | None:
        if self.conn is None:
            return None
        try:
            self.conn.receive_data(b"")
            self._process()
        except Exception:
            self._internal_error("end of input")
            return None
        # A client that half-closes right after the final dot still gets the handler's
        # reply: keep the write side open until we close it ourselves (TLS cannot do this).
        return None if self._closing or self._tls is not None else True

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its commands until it does.
        self._paused_writing = True
        try:
            self._set_reading(False)
        except Exception:
            self._internal_error("pause_writing")

    def resume_writing(self) -> None:
        self._paused_writing = False
        try:
            self._set_reading(True)
        except Exception:
            self._internal_error("resume_writing")

    # ------------------------------------------------------ PROXY header phase
    def _start_proxy(self) -> None:
        server, transport = self._server, self.transport
        assert transport is not None
        if not in_networks(self.peer_addr[0], server.proxy_trusted):
            self.logger.warning(
                "connection %d from %s:%d: not a trusted PROXY peer, closed",
                self.connection_id,
                *self.peer_addr,
            )
            self._close()
            return
        # The transport must not read: the header is taken from a duplicate descriptor of
        # the same socket, exactly up to its last byte.
        transport.pause_reading()
        self._paused_reading = True
        raw = transport.get_extra_info("socket")
        try:
            self._proxy_sock = socket.socket(fileno=os.dup(raw.fileno()))
            self._proxy_sock.setblocking(False)
            self._server._get_loop().add_reader(self._proxy_sock.fileno(), self._proxy_readable)
        except OSError as exc:  # e.g. EMFILE
            self.logger.error(
                "connection %d: cannot read PROXY header: %s", self.connection_id, exc
            )
            self._stop_proxy_read()
            self._close()
            return
        self._proxy_reader = ProxyHeaderReader()
        self._touch()

    def _stop_proxy_read(self) -> None:
        sock = self._proxy_sock
        if sock is None:
            return
        self._proxy_sock = None
        # Unregister before closing: epoll only forgets a descriptor by itself when every
        # duplicate of it is closed, and the transport keeps the original.
        self._server._get_loop().remove_reader(sock.fileno())
        sock.close()

    def _proxy_readable(self) -> None:
        try:
            self._read_proxy_header()
        except Exception:
            self._internal_error("reading the PROXY header")

    def _read_proxy_header(self) -> None:
        sock, reader = self._proxy_sock, self._proxy_reader
        if sock is None or reader is None or self._closing:
            return
        try:
            peeked = sock.recv(reader.peek_size(), socket.MSG_PEEK)
            if not peeked:
                raise ProxyError("connection closed before the PROXY header was complete")
            header = reader.feed(sock.recv(reader.consumable(peeked)))
        except (BlockingIOError, InterruptedError):
            return
        except (ProxyError, OSError) as exc:
            self.logger.warning(
                "connection %d from %s:%d: bad PROXY header, closed: %s",
                self.connection_id,
                *self.peer_addr,
                exc,
            )
            self._stop_proxy_read()
            self._close()
            return
        if header is None:
            return
        self._stop_proxy_read()
        self._proxy_reader = None
        self._proxy_header = header
        if header.source is not None:
            self.remote_addr = header.source
            if header.destination is not None:
                self.local_addr = header.destination
        self.logger.debug(
            "connection %d: PROXY v%d from %s:%d: client %s:%d%s",
            self.connection_id,
            header.version,
            *self.peer_addr,
            *self.remote_addr,
            " (LOCAL)" if header.local else "",
        )
        if not self._claim_ip():
            return
        if self._server.tls_always_on:
            self._start_implicit_tls()
        else:
            self._greet()

    # ---------------------------------------------------------------- greeting
    def _start_implicit_tls(self) -> None:
        transport = self.transport
        assert transport is not None
        # Pause now, synchronously: the ClientHello must reach the TLS layer, not us.
        transport.pause_reading()
        self._paused_reading = True
        self._deadline = 0.0  # start_tls enforces the handshake timeout itself
        self._tls_task = asyncio.ensure_future(self._handshake(implicit=True))

    def _greet(self) -> None:
        server = self._server
        if self._closing:
            return
        xclient = (
            in_networks(self.remote_addr[0], server.xclient_trusted) if server.xclient_on else None
        )
        self.conn = conn = Connection(
            server._protocol_config, tls_active=self._tls is not None, xclient=xclient
        )
        self.logger.debug(
            "connection %d from %s:%d%s",
            self.connection_id,
            *self.remote_addr,
            " (TLS)" if self._tls is not None else "",
        )
        if self._shutdown_requested:
            conn.close(R.ERROR_SHUTDOWN)
            self._flush()
            self._close()
            return
        if server._hooks.connect:
            transport = self.transport
            assert transport is not None
            if not self._paused_reading:
                # Nothing the client sends is read before the greeting.
                transport.pause_reading()
                self._paused_reading = True
            self._start(self._connect_hook())
            return
        self._greeted(None)

    def _greeted(self, refusal: Response | None) -> None:
        conn = self.conn
        assert conn is not None
        if refusal is not None:
            self.logger.info(
                "connection %d from %s:%d refused by the connect hook: %s",
                self.connection_id,
                *self.remote_addr,
                refusal.code,
            )
            conn.close(refusal)
            self._flush()
            self._close()
            return
        conn.greeting()
        self._flush()
        self._touch()
        self._set_reading(True)

    async def _connect_hook(self) -> None:
        try:
            response = await self._run_hooks(self._server._hooks.connect, 0, ())
            self._handler_task = None
            if not self._closing:
                # The connect hook may accept only with None; any 2xx means the same.
                self._greeted(None if response is None or response.is_success else response)
        except Exception:
            self._handler_task = None
            self._internal_error("the connect hook")

    # ------------------------------------------------------------- hooks, AUTH
    def _start(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run ``coro``'s first step here; if it waits, go on in a task (``_handler_task``).

        Returns:
            True when ``coro`` finished in that first step (no task, no loop turn).
        """
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            return True
        self._handler_task = asyncio.ensure_future(_resume(coro, blocked_on))
        return False

    def _view_of(self) -> _View:
        view = self._view
        if view is None:
            view = self._view = _View(self)
        return view

    async def _run_hooks(
        self, calls: tuple[HookCall, ...], kind: int, args: tuple[object, ...]
    ) -> Response | None:
        """Run the hooks of one kind in order; the first reply that is not None wins.

        A hook that raises, or returns something else than None or a final Response, is
        logged and answered ``451 4.3.0`` (as the data handler is); ``ResponseError`` sends
        its reply.
        """
        view = self._view_of()
        for index, call in enumerate(calls):
            try:
                result = await call(view, *args)
                # The common answers first, without a call; check_hook_reply for the rest.
                response = (
                    result
                    if result is None
                    or (type(result) is Response and result.code // 100 in (2, 4, 5))
                    else check_hook_reply(result, self._hook_name(kind, index))
                )
            except ResponseError as exc:
                response = exc.response
            except HandlerReturnError as exc:
                self.logger.error("connection %d: %s; sending 451 4.3.0", self.connection_id, exc)
                return R.ERROR_HANDLER
            except Exception:
                self.logger.exception(
                    "connection %d: %s failed; sending 451 4.3.0",
                    self.connection_id,
                    self._hook_name(kind, index),
                )
                return R.ERROR_HANDLER
            if response is not None:
                return response
        return None

    def _hook_name(self, kind: int, index: int) -> str:
        return f"hook {self._server._hooks.names[kind][index]}"

    def _held(self, event: object) -> bool:
        """Start deciding a command the core holds (hook or AUTH); True if already done."""
        self._deadline = 0.0  # the hook's time is not the client's
        hooks = self._server._hooks
        coro: Coroutine[Any, Any, None]
        if isinstance(event, RcptTo):
            coro = self._decide(hooks.rcpt, 3, (event.address, dict(event.params)))
        elif isinstance(event, MailFrom):
            coro = self._decide(hooks.mail, 2, (event.address, dict(event.params)))
        elif isinstance(event, Greeted):
            coro = self._decide(hooks.helo, 1, (event.name,))
        elif isinstance(event, AuthRequest):
            coro = self._guarded(self._auth_start(event))
        elif isinstance(event, AuthResponse):
            coro = self._guarded(self._auth_step(event))
        else:  # pragma: no cover - the core holds nothing else
            raise AssertionError(f"unexpected held event {event!r}")
        done = self._start(coro)
        if done:
            self._touch()
        return done

    async def _decide(
        self, calls: tuple[HookCall, ...], kind: int, args: tuple[object, ...]
    ) -> None:
        try:
            response = await self._run_hooks(calls, kind, args)
            conn = self.conn
            assert conn is not None
            if not self._closing and conn.state is State.AWAIT_REPLY:
                conn.decide(response)
        except Exception:
            self._handler_task = None
            self._internal_error("a hook's reply")
            return
        self._decided()

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            self._handler_task = None
            self._internal_error("AUTH")
            return
        self._decided()

    def _decided(self) -> None:
        """After a held command was answered: if it ran as a task, pick up the input again."""
        if self._handler_task is None:
            return  # finished inline: _process goes on by itself
        self._handler_task = None
        if self._closing:
            return
        if self._close_after_reply:
            self._flush()
            self._close()
            return
        self._touch()
        self._set_reading(True)
        self._process()

    async def _auth_start(self, event: AuthRequest) -> None:
        conn, server = self.conn, self._server
        assert conn is not None
        throttle = self._auth_throttle
        if throttle is None:
            throttle = self._auth_throttle = server.auth_throttle.connection(self.remote_addr[0])
        if throttle.blocked():
            self.logger.warning(
                "connection %d from %s:%d: AUTH refused: too many failures",
                self.connection_id,
                *self.remote_addr,
            )
            conn.close(A.AUTH_TOO_MANY_FAILURES)
            return
        self.logger.debug("connection %d: AUTH %s", self.connection_id, event.mechanism)
        try:
            exchange, step = A.SaslExchange.begin(
                event.mechanism, event.initial_response, mechanisms=server.auth_mechanisms
            )
        except A.SaslError as exc:
            await self._auth_failed(exc.response)
            return
        await self._auth_next(exchange, step)

    async def _auth_step(self, event: AuthResponse) -> None:
        exchange, self._auth_exchange = self._auth_exchange, None
        assert exchange is not None
        try:
            if event.line is None:
                raise A.SaslError(A.AUTH_LINE_TOO_LONG)
            step = exchange.receive_line(event.line)
        except A.SaslError as exc:
            await self._auth_failed(exc.response)
            return
        await self._auth_next(exchange, step)

    async def _auth_next(
        self, exchange: A.SaslExchange, step: A.SaslChallenge | A.SaslCredentials
    ) -> None:
        conn, server = self.conn, self._server
        assert conn is not None
        if isinstance(step, A.SaslChallenge):
            self._auth_exchange = exchange
            conn.sasl_challenge(step.wire())
            return
        authenticator = server.authenticator
        assert authenticator is not None
        try:
            identity = await authenticator(
                step.mechanism, step.authcid, step.password, step.authzid
            )
        except A.TemporaryAuthError:
            identity, failure = None, A.AUTH_TEMPORARY_FAILURE
        except Exception as exc:
            # Only the type: an authenticator's message might quote what the client sent.
            self.logger.error(
                "connection %d: the authenticator raised %s; sending 454 4.7.0",
                self.connection_id,
                type(exc).__qualname__,
            )
            identity, failure = None, A.AUTH_TEMPORARY_FAILURE
        else:
            failure = A.AUTH_INVALID_CREDENTIALS
            returned: object = identity
            if returned is not None and (
                not isinstance(returned, str)
                or not returned
                or any(c in returned for c in "\0\r\n")
            ):
                self.logger.error(
                    "connection %d: the authenticator returned an unusable identity; refused",
                    self.connection_id,
                )
                identity = None
        if self._closing:
            return
        if identity is None:
            if failure is A.AUTH_TEMPORARY_FAILURE:
                conn.auth_done(failure)
            else:
                await self._auth_failed(failure)
            return
        conn.auth_done(A.AUTH_SUCCEEDED, identity)
        self.logger.info(
            "connection %d from %s:%d: authenticated as %r (%s)",
            self.connection_id,
            *self.remote_addr,
            identity,
            step.mechanism,
        )

    async def _auth_failed(self, response: Response) -> None:
        """Answer a failed exchange; bad credentials are delayed, counted and limited."""
        conn = self.conn
        assert conn is not None
        if response.code != A.AUTH_INVALID_CREDENTIALS.code:
            conn.auth_done(response)  # a cancel, bad base64, a long line: not a guess
            return
        throttle = self._auth_throttle
        assert throttle is not None
        verdict = throttle.failure()
        self.logger.info(
            "connection %d from %s:%d: AUTH failed (%d on this connection)",
            self.connection_id,
            *self.remote_addr,
            throttle.failures,
        )
        if verdict.delay:
            await asyncio.sleep(verdict.delay)  # RFC 4954 9; only this client waits
        if self._closing:
            return
        if verdict.disconnect:
            conn.close(A.AUTH_TOO_MANY_FAILURES)
            return
        conn.auth_done(response)

    # ---------------------------------------------------------------- engine
    def _process(self) -> None:
        conn = self.conn
        assert conn is not None
        while not self._closing:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if type(event) in _REPLIED_EVENTS and conn.state is not S_AWAIT_REPLY:
                continue  # the core queued the reply: nothing to do (the usual MAIL and RCPT)
            if isinstance(event, Message):
                # Reading goes on while the handler runs: pipelined input is held by the core
                # (paused past _MAX_HELD), which saves two epoll calls per message.
                self._flush()
                self._deadline = 0.0  # the handler's time is not the client's
                self._start_handler(event)
                return
            if isinstance(event, StartTLS):
                self._flush()
                self._set_reading(False)
                if event.discarded:
                    # RFC 3207 5 / CVE-2011-0411: never act on plaintext sent after STARTTLS.
                    self.logger.warning(
                        "connection %d: discarded %d plaintext bytes pipelined after STARTTLS",
                        self.connection_id,
                        event.discarded,
                    )
                self._deadline = 0.0  # start_tls enforces the handshake timeout itself
                self._tls_task = asyncio.ensure_future(self._handshake(implicit=False))
                return
            if isinstance(event, CloseConnection | ConnectionClosed):
                if isinstance(event, ConnectionClosed) and event.in_data:
                    self.logger.info(
                        "connection %d: client closed during DATA; message dropped",
                        self.connection_id,
                    )
                self._flush()
                self._close()
                return
            if isinstance(event, XClient):
                self._apply_xclient(event)
            elif conn.state is S_AWAIT_REPLY and not self._held(event):
                # A hook or AUTH is still deciding; it calls _process again when done.
                return
        if conn.state is S_CLOSED and not self._closing:
            # The core gave up on this client by itself (e.g. a pipelining flood).
            self._flush()
            self._close()
            return
        if self._flush():
            self._touch()
        if (self._shutdown_requested or self._expired) and conn.idle:
            self._say_goodbye()

    def _flush(self) -> bool:
        conn, transport = self.conn, self.transport
        if conn is None or transport is None:
            return False
        out = conn.data_to_send()
        if out and not transport.is_closing():
            transport.write(out)
            return True
        return False

    def _close(self) -> None:
        self._closing = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size() and self._server.timeout:
                # A client that stops reading must not keep its slot: abort it later.
                self._kill_at = self._server._loop_time() + self._server.timeout

    def _set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        conn = self.conn
        want_paused = (
            not on
            or self._paused_writing
            or conn is None
            or conn.state is S_STARTTLS
            or (conn.state is S_AWAIT_REPLY and conn.buffered > _MAX_HELD)
        )
        if want_paused and not self._paused_reading:
            transport.pause_reading()
            self._paused_reading = True
        elif not want_paused and self._paused_reading:
            transport.resume_reading()
            self._paused_reading = False

    def _touch(self) -> None:
        timeout = self._server.timeout
        self._deadline = self._clock() + timeout if timeout else 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweeper: enforce ``timeout`` (421 4.4.2, then close)."""
        try:
            self._check_deadline(now)
        except Exception:
            self._internal_error("the deadline check")

    def _check_deadline(self, now: float) -> None:
        if self._kill_at and now >= self._kill_at:
            self.abort()
            return
        if self._expires_at and now >= self._expires_at and not self._closing:
            self._expire(now)
        if not self._deadline or now < self._deadline or self._closing:
            return
        self._deadline = 0.0
        if self.conn is None:
            self.logger.info(
                "connection %d from %s:%d: no complete PROXY header in time, closed",
                self.connection_id,
                *self.peer_addr,
            )
            self._stop_proxy_read()
            self._close()
            return
        self.logger.info(
            "connection %d from %s:%d: timeout in state %s",
            self.connection_id,
            *self.remote_addr,
            self.conn.state.value,
        )
        self.conn.close(R.ERROR_TIMEOUT)
        self._flush()
        self._close()

    def _expire(self, now: float) -> None:
        """``max_session_time`` is up: 421 4.4.2 at the next point between commands."""
        conn = self.conn
        if not self._expired:
            self._expired = True
            self.logger.info(
                "connection %d from %s:%d: session time limit (%gs) reached",
                self.connection_id,
                *self.remote_addr,
                self._server.max_session_time,
            )
            if conn is None:  # still at the PROXY header or the implicit-TLS handshake
                if self._tls_task is None or self._proxy_sock is not None:
                    self.abort()
                return
            if conn.idle and self._handler_task is None and self._tls_task is None:
                self._say_goodbye()
                return
            # In the middle of something: the next boundary ends it (see _process); one more
            # timeout at most, then it ends here.
            grace = self._server.timeout
            self._expires_at = now + grace if grace else 0.0
            return
        # The grace is over and no boundary came.
        self._expires_at = 0.0
        task = self._handler_task
        if task is not None and not task.done():
            self._close_after_reply = True  # the handler's decision is final: send it first
            return
        if conn is not None and not self._closing:
            conn.close(_SESSION_EXPIRED)
            self._flush()
        self._close()

    # -------------------------------------------------------------- shutdown
    def request_shutdown(self) -> None:
        """Close with 421 at the next point between commands (graceful shutdown)."""
        self._shutdown_requested = True
        try:
            self._request_shutdown()
        except Exception:
            self._internal_error("shutdown")

    def _request_shutdown(self) -> None:
        if self.conn is None:
            if self._tls_task is None or self._proxy_sock is not None:
                self.abort()  # nothing was said yet: a PROXY header or no greeting
            return  # a handshake in progress ends in _greet, which says 421
        if self.conn.idle and self._handler_task is None and self._tls_task is None:
            self._say_goodbye()

    def shutdown_deadline(self) -> asyncio.Task[None] | None:
        """The shutdown deadline passed: drop the connection unless a handler is running.

        A running handler is allowed to finish and its reply is sent before the connection
        closes: its decision is final, and dropping the reply would make the client retry a
        message that was already accepted.

        Returns:
            The handler task to wait for, if any.
        """
        task = self._handler_task
        if task is not None and not task.done():
            self._close_after_reply = True
            return task
        self.abort()
        return None

    def _say_goodbye(self) -> None:
        if self.conn is not None and not self._closing:
            self.conn.close(R.ERROR_SHUTDOWN if self._shutdown_requested else _SESSION_EXPIRED)
            self._flush()
        self._close()

    def abort(self) -> None:
        """Drop the connection now (deadlines passed)."""
        self._closing = True
        try:
            self._stop_proxy_read()
        finally:
            if self.transport is not None:
                self.transport.abort()

    def _internal_error(self, where: str) -> None:
        """Last resort for an exception that escaped a callback (call it from ``except``).

        Logs it once with its traceback, sends the replies the core already queued and then
        ``451 4.3.0`` (once the dialogue has started; before the greeting, or inside a TLS
        handshake, there is no one to read a reply), and closes. The core's state after an
        unexpected exception is unknown, so the session does not go on. connection_lost, or
        ``_finish`` here when there is no transport, frees the client's slot.
        """
        if not self._failed:
            self._failed = True
            self.logger.error(
                "connection %d from %s:%d: internal error in %s; closing with 451 4.3.0",
                self.connection_id,
                *self.remote_addr,
                where,
                exc_info=True,
            )
        elif self._closing:
            return
        transport, conn = self.transport, self.conn
        try:
            if (
                transport is not None
                and conn is not None
                and not self._closing
                and self._tls_task is None
                and not transport.is_closing()
            ):
                try:
                    queued = conn.data_to_send()
                except Exception:
                    queued = b""
                transport.write(queued + R.ERROR_HANDLER.wire())
            self._close()
        except Exception:
            self.logger.debug("connection %d: close after error failed", self.connection_id)
            if transport is not None:
                transport.abort()
        finally:
            self._closing = True
            if transport is None:
                self._finish()

    # --------------------------------------------------------------- actions
    def _envelope(self, message: Message, buf: MessageBuffer | None = None) -> Envelope:
        conn = self.conn
        assert conn is not None
        data = message.data if buf is None else buf.finish(message.data)
        envelope = Envelope(
            remote_addr=self.remote_addr,
            local_addr=self.local_addr,
            hostname=self._server.hostname,
            helo=conn.helo,
            esmtp=conn.esmtp,
            tls=self._tls,
            mail_from=message.mail_from,
            rcpt_to=list(message.rcpt_to),
            data=data,
            utf8=message.utf8,
            body_type=message.body_type,
            connection_id=self.connection_id,
            lmtp=self._server._protocol_config.lmtp,
            chunked=message.chunked,
            dsn_ret=message.dsn_ret,
            dsn_envid=message.dsn_envid,
            rcpt_dsn=list(message.rcpt_dsn),
            requiretls=message.requiretls,
        )
        if buf is not None and buf.spool is not None and buf.failed is None:
            envelope._set_spool(buf.spool)
        envelope.authenticated = conn.authenticated
        envelope.mail_auth = conn.mail_auth
        values: dict[str, Any] = envelope.values
        if self._proxy_header is not None:
            values["proxy"] = self._proxy_header
        if self._xclient:
            values["xclient"] = dict(self._xclient)
        return envelope

    def _start_handler(self, message: Message) -> None:
        # Run the handler's first step right here instead of in a new task: a handler that
        # never waits (the common case) then costs no task and no extra loop turn.
        self._start(self._run_handler(message))

    async def _run_handler(self, message: Message) -> None:
        # Runs as a task (or its first step inside _process): nothing may escape it, or the
        # client would wait for a reply that never comes while its slot stays taken.
        buf, self._message = self._message, None
        if buf is not None and not buf.delivered():
            # Left by an earlier message of this read that the core refused (or RSET), whose
            # end no _stream() call saw: not this message's bytes.
            buf.close()
            buf = None
        try:
            await self._handle(message, buf)
        except Exception:
            self._handler_task = None
            self._internal_error("the handler's reply")
        finally:
            if buf is not None:
                buf.close()  # the spool file lives only while the handler runs

    async def _handle(self, message: Message, buf: MessageBuffer | None = None) -> None:
        envelope = self._envelope(message, buf)
        response: Response | None
        try:
            if buf is not None and buf.failed is not None:
                # The spool write failed (a full disk): the client retries later.
                self.logger.error(
                    "connection %d: spooling the message failed (%s); sending 451 4.3.0",
                    self.connection_id,
                    buf.failed,
                )
                response = R.ERROR_HANDLER
            else:
                # chain() checks what every layer returns (HandlerReturnError below).
                response = await self._server._handler_chain(envelope)
        except ResponseError as exc:
            response = exc.response
        except HandlerReturnError as exc:
            # A programming error with a plain cause: one line, no traceback to dig through.
            self.logger.error(
                "connection %d: %s (envelope %s); sending 451 4.3.0",
                self.connection_id,
                exc,
                envelope.envelope_id,
            )
            response = R.ERROR_HANDLER
        except Exception:
            self.logger.exception(
                "connection %d: handler failed for envelope %s",
                self.connection_id,
                envelope.envelope_id,
            )
            response = R.ERROR_HANDLER
        if response is None:
            response = R.SUCCESS_MESSAGE_ACCEPTED
        elif response.code // 100 not in (2, 4, 5):
            # After DATA only a final reply makes sense (RFC 5321 4.2.5).
            self.logger.error("handler returned a non-final reply %s; sending 451", response)
            response = R.ERROR_HANDLER
        if buf is not None:
            buf.close()  # before the reply: a client that saw it finds no spool file left
        self._handler_task = None
        conn = self.conn
        assert conn is not None
        replies = self._lmtp_replies(response, message, envelope)
        if self._closing:
            self.logger.warning(
                "connection %d: client left before the reply to envelope %s (%s)",
                self.connection_id,
                envelope.envelope_id,
                response.code,
            )
            return
        conn.send(response if replies is None else replies)
        self._flush()
        if self._close_after_reply:
            self._close()
            return
        self._touch()
        self._set_reading(True)
        self._process()  # commands pipelined after the final dot (RFC 2920)

    def _lmtp_replies(
        self, response: Response, message: Message, envelope: Envelope
    ) -> tuple[Response, ...] | None:
        """LMTP (RFC 2033 4.2): one final reply per recipient, in RCPT order; None for SMTP."""
        if not self._server._protocol_config.lmtp:
            return None
        count = len(message.rcpt_to)
        if not isinstance(response, PerRecipient):
            return (response,) * count
        if len(response.replies) != count:
            self.logger.error(
                "connection %d: handler returned %d per-recipient replies for %d recipients"
                " (envelope %s); sending 451 4.3.0",
                self.connection_id,
                len(response.replies),
                count,
                envelope.envelope_id,  # made only here: SMTP never pays for the id
            )
            return (R.ERROR_HANDLER,) * count
        replies = []
        for reply in response.replies:
            if reply.code // 100 not in (2, 4, 5):
                self.logger.error("handler returned a non-final reply %s; sending 451", reply)
                reply = R.ERROR_HANDLER
            replies.append(reply)
        return tuple(replies)

    async def _handshake(self, *, implicit: bool) -> None:
        try:
            await self._upgrade(implicit=implicit)
        except Exception:
            self._tls_task = None
            self._internal_error("the TLS upgrade")

    async def _upgrade(self, *, implicit: bool) -> None:
        transport, server = self.transport, self._server
        assert transport is not None
        assert server.tls is not None
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                transport,
                self,
                server.tls,
                server_side=True,
                ssl_handshake_timeout=server.timeout or None,
            )
        except Exception as exc:  # any failure ends this connection only
            self._tls_task = None
            self.logger.info(
                "connection %d from %s:%d: TLS handshake failed: %s",
                self.connection_id,
                *self.remote_addr,
                str(exc) or type(exc).__name__,
            )
            transport.abort()
            self._finish()
            return
        self._tls_task = None
        if new_transport is None or self._closing:
            transport.abort()
            self._finish()
            return
        self.transport = new_transport
        self._paused_reading = False
        self._tls = tls_info(new_transport)
        if implicit:
            self._greet()
            return
        conn = self.conn
        assert conn is not None
        conn.tls_established()  # RFC 3207 4.2: forget everything but the connection identity
        self._touch()
        early, self._early_tls = self._early_tls, b""
        if self._shutdown_requested or self._expired:
            self._say_goodbye()
        elif early:
            self._received(early)

    def _apply_xclient(self, event: XClient) -> None:
        attrs = event.attrs
        self._xclient.update(attrs)
        host, port = self.remote_addr
        addr = attrs.get("ADDR")
        if addr is not None:
            # Validated by the core: an IPv4 address or an (optionally "IPV6:"-tagged) IPv6 one.
            host = ipaddress.ip_address(
                addr[5:] if addr[:5].upper() == "IPV6:" else addr
            ).compressed
        value = attrs.get("PORT")
        if value is not None:
            port = int(value)
        self.remote_addr = (host, port)
        if addr is not None and not self._server._claim_ip(self, host):
            # The per-IP limit counts the client XCLIENT names, not the proxy in front of it.
            self.logger.warning(
                "connection %d: XCLIENT client %s refused: %d connections from it already",
                self.connection_id,
                host,
                self._server.max_clients_per_ip,
            )
            conn = self.conn
            assert conn is not None
            conn.close(_TOO_MANY_FROM_IP)
            return
        self.logger.debug(
            "connection %d: XCLIENT from %s:%d: client %s:%d name=%s helo=%s",
            self.connection_id,
            *self.peer_addr,
            host,
            port,
            attrs.get("NAME") or "-",
            attrs.get("HELO") or "-",
        )
