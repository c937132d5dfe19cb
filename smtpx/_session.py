"""One client connection: transport <-> protocol.Connection <-> handler chain.

An ``asyncio.Protocol`` with one receive path and one write per batch of replies; no task or
timer of its own except the task that runs the handler for a finished message. Deadlines are
checked by the server's single sweeper (``Server._sweep``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from typing import TYPE_CHECKING

from . import responses as R
from .envelope import Envelope, TLSInfo
from .protocol import (
    NEED_DATA,
    CloseConnection,
    Connection,
    ConnectionClosed,
    Message,
    StartTLS,
    State,
    XClient,
)
from .responses import Response, ResponseError

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Session"]


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


class Session(asyncio.Protocol):
    """The asyncio side of one SMTP connection."""

    __slots__ = (
        "_closing",
        "_deadline",
        "_handler_task",
        "_paused_reading",
        "_paused_writing",
        "_server",
        "_shutdown_requested",
        "_tls",
        "conn",
        "connection_id",
        "local_addr",
        "remote_addr",
        "transport",
    )

    def __init__(self, server: Server, connection_id: int) -> None:
        self._server = server
        self.connection_id = connection_id
        self.transport: asyncio.Transport | None = None
        self.conn: Connection | None = None
        self.remote_addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)
        self._tls: TLSInfo | None = None
        self._deadline = 0.0
        self._handler_task: asyncio.Task[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self._closing = False
        self._shutdown_requested = False

    @property
    def logger(self) -> logging.Logger:
        return self._server.logger

    # ------------------------------------------------------------ lifecycle
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self._server
        self.remote_addr = _addr(transport.get_extra_info("peername"))
        self.local_addr = _addr(transport.get_extra_info("sockname"))
        if not server._register(self):
            # RFC 5321 3.8: a server may refuse a connection with 421 instead of a greeting.
            transport.write(R.ERROR_TOO_MANY_CLIENTS.wire())
            self._close()
            return
        self._tls = tls_info(transport)
        xclient = (
            in_networks(self.remote_addr[0], server.xclient_trusted) if server.xclient_on else None
        )
        self.conn = Connection(
            server._protocol_config, tls_active=self._tls is not None, xclient=xclient
        )
        self.logger.debug("connection %d from %s:%d", self.connection_id, *self.remote_addr)
        if self._shutdown_requested or server._shutting_down:
            self.conn.close(R.ERROR_SHUTDOWN)
            self._flush()
            self._close()
            return
        self.conn.greeting()
        self._flush()
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.conn is not None and self.conn.state is not State.CLOSED:
            self.conn.close()
        self._server._unregister(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None or self._closing:
            return
        if conn.state is State.DATA:
            self._touch()  # in DATA the timeout bounds silence, not the whole upload
        conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        if self.conn is not None:
            self.conn.receive_data(b"")
            self._process()
        return None  # let the transport close itself

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its commands until it does.
        self._paused_writing = True
        self._set_reading(False)

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._set_reading(True)

    # ---------------------------------------------------------------- engine
    def _process(self) -> None:
        conn = self.conn
        assert conn is not None
        while not self._closing:
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Message):
                self._flush()
                self._set_reading(False)
                self._deadline = 0.0  # the handler's time is not the client's
                self._handler_task = asyncio.ensure_future(self._run_handler(event))
                return
            if isinstance(event, StartTLS):
                self._flush()
                self._set_reading(False)
                if event.discarded:
                    self.logger.warning(
                        "connection %d: discarded %d plaintext bytes pipelined after STARTTLS",
                        self.connection_id,
                        event.discarded,
                    )
                self._handler_task = asyncio.ensure_future(self._start_tls())
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
        if self._flush():
            self._touch()
        if self._shutdown_requested and conn.idle:
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
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _set_reading(self, on: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want_paused = (
            not on
            or self._paused_writing
            or (self.conn is not None and self.conn.state in (State.AWAIT_REPLY, State.STARTTLS))
        )
        if want_paused and not self._paused_reading:
            transport.pause_reading()
            self._paused_reading = True
        elif not want_paused and self._paused_reading:
            transport.resume_reading()
            self._paused_reading = False

    def _touch(self) -> None:
        timeout = self._server.timeout
        self._deadline = self._server._loop_time() + timeout if timeout else 0.0

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweeper: close with 421 4.4.2 when the client is too slow."""
        if self._deadline and now >= self._deadline and not self._closing:
            self.logger.info("connection %d: timeout", self.connection_id)
            if self.conn is not None:
                self.conn.close(R.ERROR_TIMEOUT)
                self._flush()
            self._close()

    # -------------------------------------------------------------- shutdown
    def request_shutdown(self) -> None:
        """Close with 421 at the next point between commands (graceful shutdown)."""
        self._shutdown_requested = True
        if self.conn is not None and self.conn.idle and self._handler_task is None:
            self._say_goodbye()

    def _say_goodbye(self) -> None:
        if self.conn is not None and not self._closing:
            self.conn.close(R.ERROR_SHUTDOWN)
            self._flush()
        self._close()

    def abort(self) -> None:
        """Drop the connection now (shutdown deadline passed)."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # --------------------------------------------------------------- actions
    def _envelope(self, message: Message) -> Envelope:
        conn = self.conn
        assert conn is not None
        return Envelope(
            remote_addr=self.remote_addr,
            local_addr=self.local_addr,
            hostname=self._server.hostname,
            helo=conn.helo,
            esmtp=conn.esmtp,
            tls=self._tls,
            mail_from=message.mail_from,
            rcpt_to=list(message.rcpt_to),
            data=message.data,
            utf8=message.utf8,
            body_type=message.body_type,
            connection_id=self.connection_id,
        )

    async def _run_handler(self, message: Message) -> None:
        envelope = self._envelope(message)
        try:
            response: Response | None = await self._server._handler_chain(envelope)
        except ResponseError as exc:
            response = exc.response
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
        self._handler_task = None
        conn = self.conn
        assert conn is not None
        if self._closing:
            self.logger.warning(
                "connection %d: client left before the reply to envelope %s (%s)",
                self.connection_id,
                envelope.envelope_id,
                response.code,
            )
            return
        conn.send(response)
        self._flush()
        self._touch()
        self._set_reading(True)
        self._process()  # commands pipelined after the final dot (RFC 2920)

    async def _start_tls(self) -> None:
        transport, conn, server = self.transport, self.conn, self._server
        assert transport is not None
        assert conn is not None
        assert server.tls is not None
        self._deadline = 0.0  # start_tls enforces its own handshake timeout
        loop = asyncio.get_running_loop()
        try:
            new_transport = await loop.start_tls(
                transport,
                self,
                server.tls,
                server_side=True,
                ssl_handshake_timeout=server.timeout or None,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            self.logger.info("connection %d: TLS handshake failed: %s", self.connection_id, exc)
            self._handler_task = None
            self.abort()
            return
        self._handler_task = None
        if new_transport is None or self._closing:
            self.abort()
            return
        assert isinstance(new_transport, asyncio.Transport)
        self.transport = new_transport
        self._paused_reading = False
        self._tls = tls_info(new_transport)
        conn.tls_established()
        self._touch()
        if self._shutdown_requested:
            self._say_goodbye()

    def _apply_xclient(self, event: XClient) -> None:
        addr = event.attrs.get("ADDR")
        port = event.attrs.get("PORT")
        host, old_port = self.remote_addr
        if addr is not None and addr != "[TEMPUNAVAIL]":
            host = addr[5:] if addr[:5].upper() == "IPV6:" else addr
        new_port = int(port) if port is not None and port.isdigit() else old_port
        self.remote_addr = (host, new_port)
        self.logger.info(
            "connection %d: XCLIENT from trusted proxy, client is now %s:%d",
            self.connection_id,
            host,
            new_port,
        )
