"""Server: options, listening, the client count and graceful shutdown; the asyncio side only."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import gc
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence

from ._session import ClientInfo, Session
from ._spool import MemoryBudget, remove_stale_spools
from ._unix import DEFAULT_UNIX_MODE, UnixListener, unix_path
from .auth import MECHANISMS, Authenticator, AuthThrottle, SaslMechanism
from .handler import (
    NOOP_HANDLER,
    Handler,
    HandlerFunc,
    Middleware,
    SyncHandlerFunc,
    chain,
    new_handler,
)
from .hooks import HookSet, collect_hooks
from .protocol import ProtocolConfig

__all__ = [
    "DEFAULT_ADDR",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_ERRORS",
    "DEFAULT_MAX_JUNK_COMMANDS",
    "DEFAULT_MAX_MEMORY",
    "DEFAULT_MAX_RECIPIENTS",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MAX_UNRECOGNIZED_COMMANDS",
    "DEFAULT_SPOOL_THRESHOLD",
    "DEFAULT_TIMEOUT",
    "DEFAULT_UNIX_MODE",
    "LOOPBACK_NETWORKS",
    "ClientInfo",
    "Server",
    "ServerState",
    "parse_addr",
]

DEFAULT_ADDR = ":2525"
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_CLIENTS = 100
DEFAULT_MAX_RECIPIENTS = 100
DEFAULT_MAX_UNRECOGNIZED_COMMANDS = 5
DEFAULT_MAX_ERRORS = 20
DEFAULT_MAX_JUNK_COMMANDS = 100
DEFAULT_SPOOL_THRESHOLD = 4 * 1024 * 1024
DEFAULT_MAX_MEMORY = 16 * 1024 * 1024
RECV_BUFFER_SIZE = 256 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class ServerState(enum.Enum):
    """The server's lifecycle (Go ``ServerState*``)."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"
    START_ERROR = "start error"


def parse_addr(addr: str) -> tuple[str | None, int]:
    """Split ``"host:port"``, ``":port"`` or ``"[v6]:port"``; no host means every interface."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return (host or None), int(port)


def _describe_sockname(name: object) -> str:
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return f"unix:{name!s}"


def _networks(values: Iterable[str | Network]) -> tuple[Network, ...]:
    return tuple(
        v if not isinstance(v, str) else ipaddress.ip_network(v, strict=False) for v in values
    )


class Server:
    """An SMTP server (Go ``smtpx.Server``).

    Args:
        hostname: Name used in the greeting and EHLO reply; defaults to the machine's name.
        addr: ``"host:port"`` to listen on; ``":2525"`` listens on every interface;
            ``"unix:/path"`` listens on a Unix-domain socket (SMTP or LMTP). Only a stale
            socket at that path is replaced; a symlink, a regular file, a directory or a
            socket a server listens on is a startup error, left untouched. The socket file is
            removed at shutdown.
        handler: Receives each envelope after DATA: a ``Handler`` or a function (async, or
            plain, which then runs in a worker thread). Defaults to accept-and-discard.
        middlewares: Wrap the handler; the first is outermost.
        logger: A stdlib logger; defaults to ``logging.getLogger("smtpx")``.
        tls: Enables STARTTLS (RFC 3207) with this server-side context.
        tls_always_on: Implicit TLS (port 465 style) instead of STARTTLS; needs ``tls``.
        require_tls: Refuse MAIL with 530 5.7.0 until STARTTLS was done.
        max_size: Largest message in bytes (advertised as SIZE).
        timeout: Seconds allowed for each command line, for each silence inside DATA, and for
            the TLS handshake and PROXY header; 0 disables.
        max_clients: Concurrent connections; the next one gets 421 4.3.2.
        max_clients_per_ip: Concurrent connections from one client address (an IPv6 client
            counts by its /64, which one host usually holds whole); the next gets 421 4.7.0
            and is closed, so that one client cannot hold every slot. None (the default)
            means half of ``max_clients``, at least 1, as Postfix's anvil defaults
            (``smtpd_client_connection_count_limit`` 50 of 100 processes). The address is the
            one PROXY or XCLIENT reported when they are on.
        max_clients_per_ip_exempt: Networks the per-address limit does not apply to. Default
            loopback: like Postfix (whose ``smtpd_client_event_limit_exceptions`` defaults to
            ``$mynetworks``, the machine itself), connections from this host (a local MTA,
            a content filter, monitoring) are trusted, while remote clients are limited.
        max_session_time: Seconds a connection may last in all; at the next point between
            commands after that it gets 421 4.4.2 and is closed (a client that reaches no such
            point within ``timeout`` more seconds is closed then; a running handler is waited
            for). 0 (the default) means no limit: ``timeout``, ``max_clients_per_ip`` and the
            core's command limits already bound an idle or junk-sending client.
        xclient_on: Accept Postfix XCLIENT from ``xclient_trusted`` networks.
        xclient_trusted: Networks allowed to use XCLIENT (default loopback).
        proxy_on: Expect a HAProxy PROXY header (v1 or v2) from ``proxy_trusted`` networks.
        proxy_trusted: Networks allowed to send a PROXY header (default loopback).
        max_recipients: RCPT commands per transaction; the next gets 452 4.5.3.
        max_unrecognized_commands: At this many unknown commands the connection gets 421.
        max_errors: Error replies (4xx/5xx) the core may send without an accepted message in
            between; the next ends the session with 421 4.7.0 (Postfix
            ``smtpd_hard_error_limit``, default 20). 0 disables.
        max_junk_commands: NOOP, RSET, VRFY and HELP commands allowed without an accepted
            message in between; the next gets 421 4.7.0 and the session ends (Postfix
            ``smtpd_junk_command_limit``, default 100). 0 disables.
        normalize_line_endings: Store bare CR/LF in DATA as CRLF instead of rejecting the
            message (rejecting is the SMTP smuggling defence).
        allow_nul: Store NUL bytes in DATA instead of refusing the message with 550 5.6.0
            (RFC 5322 forbids NUL; a hop that drops it could see an end of data).
        forbid_unauth_pipelining: Drop clients that send commands before the reply that ends
            their RFC 2920 command group (after DATA, EHLO, ...), or pipeline without EHLO,
            with 554 5.5.0 (Postfix 3.9 ``smtpd_forbid_unauth_pipelining``).
        workers: Processes sharing the port via SO_REUSEPORT (``listen_and_serve`` only).
        hooks: More objects with session hooks (``connect``, ``helo``, ``mail``, ``rcpt``; see
            ``smtpx.hooks``), run after the handler's own hooks, in order; the first reply
            that is not None wins. E.g. ``smtpx.hooks.filter_recipient_domains("example.org")``.
        authenticator: Enables AUTH (RFC 4954): an async callable checking credentials (see
            ``smtpx.auth.Authenticator``, e.g. ``FileAuthenticator``). AUTH is offered only on
            TLS connections (``538 5.7.11`` before), so it needs ``tls`` unless
            ``auth_allow_insecure``.
        auth_required: MAIL gets ``530 5.7.0`` until the client authenticated.
        auth_allow_insecure: Offer AUTH on plaintext connections too (passwords in clear;
            for tests and trusted networks only; logged as a warning).
        auth_throttle: Failed-AUTH delays and limits (``smtpx.auth.AuthThrottle``): by default
            1 s doubling up to 8 s before each failure reply, ``421 4.7.0`` and close after 3
            failures on a connection or 20 from one address in 15 minutes.
        auth_mechanisms: SASL mechanisms offered, by upper-case name (default PLAIN, LOGIN).
        lmtp: Speak LMTP (RFC 2033) instead of SMTP: LHLO (HELO and EHLO get 500), and after
            the message one reply per accepted recipient, in RCPT order. The handler may
            return one ``Response`` for all, or a ``PerRecipient``.
        dsn: Advertise DSN (RFC 3461) and parse RET, ENVID, NOTIFY and ORCPT into
            ``envelope.dsn_ret``, ``envelope.dsn_envid`` and ``envelope.rcpt_dsn``; without it
            those parameters get ``555 5.5.4``.
        offer_requiretls: Advertise REQUIRETLS (RFC 8689) on TLS connections; the MAIL flag
            reaches the handler as ``envelope.requiretls``. Needs ``tls``.
        unix_mode: Permission bits of a Unix socket file (default 0660), set before it
            accepts connections, whatever the umask.
        spool_threshold: A message longer than this many bytes (default 4 MiB) is written to
            a temporary file in ``spool_dir`` while it arrives, and the handler gets a
            file-backed envelope (``Envelope.spooled``, ``open()``, ``chunks()``). 0 spools
            every message past the first 256 KiB (what a reader holds before it is drained).
        spool_dir: Where spool files are made (created ``O_EXCL``, mode 0600, removed when
            the handler returns or the upload is abandoned); the system's temporary directory
            when None. A write that fails there (full disk) gets ``451 4.3.0`` after the
            client's data is read to its end. Files a killed process left there are removed
            when a server starts (each live one holds a ``flock``).
        max_memory: Bytes of message content all connections together may hold in memory
            (default 16 MiB; with ``workers``, per worker process); past it, messages spool
            even under ``spool_threshold``. Each connection's reader also holds up to 256 KiB
            plus one read before it is drained, outside this budget.
    """

    def __init__(
        self,
        *,
        hostname: str | None = None,
        addr: str = DEFAULT_ADDR,
        handler: Handler | HandlerFunc | SyncHandlerFunc | None = None,
        middlewares: Sequence[Middleware] = (),
        logger: logging.Logger | None = None,
        tls: ssl.SSLContext | None = None,
        tls_always_on: bool = False,
        require_tls: bool = False,
        max_size: int = DEFAULT_MAX_SIZE,
        timeout: float = DEFAULT_TIMEOUT,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        max_clients_per_ip: int | None = None,
        max_clients_per_ip_exempt: Iterable[str | Network] = LOOPBACK_NETWORKS,
        max_session_time: float = 0.0,
        xclient_on: bool = False,
        xclient_trusted: Iterable[str | Network] = LOOPBACK_NETWORKS,
        proxy_on: bool = False,
        proxy_trusted: Iterable[str | Network] = LOOPBACK_NETWORKS,
        max_recipients: int = DEFAULT_MAX_RECIPIENTS,
        max_unrecognized_commands: int = DEFAULT_MAX_UNRECOGNIZED_COMMANDS,
        max_errors: int = DEFAULT_MAX_ERRORS,
        max_junk_commands: int = DEFAULT_MAX_JUNK_COMMANDS,
        normalize_line_endings: bool = False,
        allow_nul: bool = False,
        forbid_unauth_pipelining: bool = True,
        workers: int = 1,
        hooks: Sequence[object] = (),
        authenticator: Authenticator | None = None,
        auth_required: bool = False,
        auth_allow_insecure: bool = False,
        auth_throttle: AuthThrottle | None = None,
        auth_mechanisms: Mapping[str, Callable[[], SaslMechanism]] = MECHANISMS,
        lmtp: bool = False,
        dsn: bool = False,
        offer_requiretls: bool = False,
        unix_mode: int = DEFAULT_UNIX_MODE,
        spool_threshold: int = DEFAULT_SPOOL_THRESHOLD,
        spool_dir: str | os.PathLike[str] | None = None,
        max_memory: int = DEFAULT_MAX_MEMORY,
    ) -> None:
        if offer_requiretls and tls is None:
            raise ValueError("offer_requiretls needs a tls context")
        if not 0 <= unix_mode <= 0o777:
            raise ValueError("unix_mode must be permission bits, 0 to 0o777")
        if tls_always_on and tls is None:
            raise ValueError("tls_always_on needs a tls context")
        if require_tls and tls is None:
            raise ValueError("require_tls needs a tls context")
        if authenticator is None and (auth_required or auth_allow_insecure):
            raise ValueError("auth_required and auth_allow_insecure need an authenticator")
        if authenticator is not None and tls is None and not auth_allow_insecure:
            raise ValueError("AUTH is offered only over TLS: give tls, or auth_allow_insecure")
        if authenticator is not None and not auth_mechanisms:
            raise ValueError("an authenticator needs at least one SASL mechanism")
        for name, value in (
            ("max_size", max_size),
            ("max_clients", max_clients),
            ("max_clients_per_ip", 1 if max_clients_per_ip is None else max_clients_per_ip),
            ("max_recipients", max_recipients),
            ("max_unrecognized_commands", max_unrecognized_commands),
            ("workers", workers),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if timeout < 0:
            raise ValueError("timeout must not be negative")
        if max_errors < 0 or max_junk_commands < 0:
            raise ValueError("max_errors and max_junk_commands must not be negative")
        if max_session_time < 0:
            raise ValueError("max_session_time must not be negative")
        if spool_threshold < 0 or max_memory < 0:
            raise ValueError("spool_threshold and max_memory must not be negative")
        self.hostname = hostname or socket.gethostname()
        self.addr = addr
        self.unix_path = unix_path(addr)
        if self.unix_path is None:
            parse_addr(addr)  # fail early on a malformed address
        elif workers > 1:
            raise ValueError("a unix socket address works with workers=1")
        self.unix_mode = unix_mode
        self.lmtp = lmtp
        self.dsn = dsn
        self.offer_requiretls = offer_requiretls
        self._unix: UnixListener | None = None
        self.logger = logger or logging.getLogger("smtpx")
        self.tls = tls
        self.tls_always_on = tls_always_on
        self.require_tls = require_tls
        self.max_size = max_size
        self.timeout = float(timeout)
        self.max_clients = max_clients
        self.max_clients_per_ip = (
            max(1, max_clients // 2) if max_clients_per_ip is None else max_clients_per_ip
        )
        self.max_clients_per_ip_exempt = _networks(max_clients_per_ip_exempt)
        self.max_session_time = float(max_session_time)
        self.spool_threshold = spool_threshold
        self.spool_dir = None if spool_dir is None else os.fspath(spool_dir)
        self.max_memory = max_memory
        # Message bytes held in memory by every session of this server (max_memory).
        self._memory_budget = MemoryBudget(max_memory)
        self.xclient_on = xclient_on
        self.xclient_trusted = _networks(xclient_trusted)
        self.proxy_on = proxy_on
        self.proxy_trusted = _networks(proxy_trusted)
        self.max_recipients = max_recipients
        self.max_unrecognized_commands = max_unrecognized_commands
        self.max_errors = max_errors
        self.max_junk_commands = max_junk_commands
        self.normalize_line_endings = normalize_line_endings
        self.allow_nul = allow_nul
        self.forbid_unauth_pipelining = forbid_unauth_pipelining
        self.workers = workers
        self.authenticator = authenticator
        self.auth_required = auth_required
        self.auth_allow_insecure = auth_allow_insecure
        self.auth_throttle = auth_throttle if auth_throttle is not None else AuthThrottle()
        self.auth_mechanisms = {k.upper(): v for k, v in auth_mechanisms.items()}
        if authenticator is not None and auth_allow_insecure:
            self.logger.warning("AUTH is offered without TLS: passwords may cross in clear")
        self._handler: Handler = NOOP_HANDLER
        self._middlewares: list[Middleware] = list(middlewares)
        self._extra_hooks = list(hooks)
        self._hooks = HookSet()
        self._base_config = ProtocolConfig(
            hostname=self.hostname,
            max_size=max_size,
            max_recipients=max_recipients,
            max_unrecognized_commands=max_unrecognized_commands,
            max_errors=max_errors,
            max_junk_commands=max_junk_commands,
            tls_available=tls is not None and not tls_always_on,
            require_tls=require_tls,
            normalize_line_endings=normalize_line_endings,
            allow_nul=allow_nul,
            forbid_unauth_pipelining=forbid_unauth_pipelining,
            auth_mechanisms=tuple(self.auth_mechanisms) if authenticator is not None else (),
            auth_insecure=auth_allow_insecure,
            auth_required=auth_required,
            lmtp=lmtp,
            dsn=dsn,
            offer_requiretls=offer_requiretls,
        )
        self._protocol_config = self._base_config
        self.handler = handler if handler is not None else NOOP_HANDLER
        self._state = ServerState.NEW
        self._sessions: set[Session] = set()
        self._per_ip: dict[str, int] = {}
        self._next_id = 0
        self._servers: list[asyncio.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._graceful = True
        self._sweeper: asyncio.Task[None] | None = None
        self._shutting_down = False
        # One receive buffer for every connection (see smtpx._session): no allocation per read.
        self._recv_view = memoryview(bytearray(RECV_BUFFER_SIZE))

    # ------------------------------------------------------------ handler chain
    @property
    def handler(self) -> Handler:
        """The handler at the centre of the middleware chain."""
        return self._handler

    @handler.setter
    def handler(self, value: Handler | HandlerFunc | SyncHandlerFunc) -> None:
        self._handler = value if isinstance(value, Handler) else new_handler(value)
        self._rebuild_chain()

    @property
    def middlewares(self) -> list[Middleware]:
        """A copy of the middleware list; assign a new list to change it at runtime."""
        return list(self._middlewares)

    @middlewares.setter
    def middlewares(self, value: Sequence[Middleware]) -> None:
        self._middlewares = list(value)
        self._rebuild_chain()

    def use(self, *middlewares: Middleware) -> None:
        """Append middlewares (Go ``Server.Use``); they take effect for the next message."""
        self._middlewares.extend(middlewares)
        self._rebuild_chain()

    @property
    def hooks(self) -> list[object]:
        """A copy of the extra hook objects; assign a new list to change them at runtime."""
        return list(self._extra_hooks)

    @hooks.setter
    def hooks(self, value: Sequence[object]) -> None:
        self._extra_hooks = list(value)
        self._rebuild_chain()

    def _rebuild_chain(self) -> None:
        self._handler_chain = chain(self._handler, self._middlewares)
        # Hooks are found once here, not per command; a command without hooks costs nothing.
        hooks = self._hooks = collect_hooks([self._handler, *self._extra_hooks])
        self._protocol_config = dataclasses.replace(
            self._base_config,
            hook_helo=bool(hooks.helo),
            hook_mail=bool(hooks.mail),
            hook_rcpt=bool(hooks.rcpt),
        )

    # ------------------------------------------------------------------- state
    @property
    def state(self) -> ServerState:
        """NEW, RUNNING, STOPPED or START_ERROR."""
        return self._state

    @property
    def active_clients(self) -> int:
        """Connections open right now (Go ``GetActiveClientsCount``)."""
        return len(self._sessions)

    def clients(self) -> list[ClientInfo]:
        """A snapshot of every open connection and where it is in the SMTP dialogue."""
        return [session.info() for session in self._sessions]

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets (after ``start``)."""
        return [s for srv in self._servers for s in srv.sockets]

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        for sock in self.sockets:
            name = sock.getsockname()
            if isinstance(name, tuple):
                return int(name[1])
        raise RuntimeError("server is not listening on TCP")

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _register(self, session: Session) -> bool:
        if len(self._sessions) >= self.max_clients:
            return False
        self._sessions.add(session)
        return True

    def _claim_ip(self, session: Session, host: str) -> bool:
        """Count ``session`` against its client address; False when that one is full."""
        self._release_ip(session)
        key = self._ip_key(host)
        if key is None:
            return True
        count = self._per_ip.get(key, 0)
        if count >= self.max_clients_per_ip:
            return False
        self._per_ip[key] = count + 1
        session.ip_key = key
        return True

    def _release_ip(self, session: Session) -> None:
        key, session.ip_key = session.ip_key, None
        if key is not None:
            count = self._per_ip[key] - 1
            if count:
                self._per_ip[key] = count
            else:
                del self._per_ip[key]

    def _ip_key(self, host: str) -> str | None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None  # not an IP peer (e.g. a Unix socket): nothing to count by
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip.version == n.version and ip in n for n in self.max_clients_per_ip_exempt):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            # One host usually holds a whole /64 (SLAAC, privacy addresses): count by it.
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def _unregister(self, session: Session) -> None:
        self._release_ip(session)
        self._sessions.discard(session)
        if self._shutting_down and not self._sessions and self._drained is not None:
            self._drained.set()

    def _new_session(self) -> Session:
        self._next_id += 1
        return Session(self, self._next_id)

    # --------------------------------------------------------------- serving
    async def start(self, *, sock: socket.socket | Sequence[socket.socket] | None = None) -> None:
        """Bind and start accepting; returns once listening.

        May be called again after ``shutdown`` has completed.

        Args:
            sock: Already bound listening socket(s) to use instead of ``addr``.

        Raises:
            OSError: The address could not be bound (state becomes START_ERROR).
            RuntimeError: The server is running or still shutting down.
        """
        if self._state is ServerState.RUNNING:
            raise RuntimeError("server is already running")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._shutting_down = False
        self._drained = asyncio.Event()
        self._stopped = asyncio.Event()
        # Spool files a killed process could not remove (their locks are free).
        stale = remove_stale_spools(self.spool_dir)
        if stale:
            self.logger.warning("removed %d spool file(s) left by a process that stopped", stale)
        # TLS is never given to create_server: implicit TLS runs in the session, after the
        # PROXY header (which precedes the handshake) and inside the client count.
        try:
            if sock is not None:
                socks = [sock] if isinstance(sock, socket.socket) else list(sock)
                servers = [
                    await loop.create_server(self._new_session, sock=s, backlog=1024) for s in socks
                ]
            elif self.unix_path is not None:
                # Bound here, not by create_unix_server, which would remove any socket at the
                # path (a live one too) and follow a symlink.
                self._unix = UnixListener(self.unix_path, self.unix_mode)
                try:
                    servers = [
                        await loop.create_unix_server(self._new_session, sock=self._unix.sock)
                    ]
                except BaseException:
                    self._remove_unix()
                    raise
            else:
                host, port = parse_addr(self.addr)
                servers = [
                    await loop.create_server(
                        self._new_session,
                        host,
                        port,
                        reuse_port=self.workers > 1 or None,
                        backlog=1024,
                    )
                ]
        except OSError:
            self._state = ServerState.START_ERROR
            raise
        self._servers = servers
        self._state = ServerState.RUNNING
        if self.timeout or self.max_session_time:
            self._sweeper = asyncio.ensure_future(self._sweep())
        self.logger.info(
            "listening on %s (pid %d)%s",
            ", ".join(_describe_sockname(s.getsockname()) for s in self.sockets),
            os.getpid(),
            " (LMTP)" if self.lmtp else "",
        )

    def _remove_unix(self) -> None:
        unix, self._unix = self._unix, None
        if unix is not None:
            unix.remove()
            unix.sock.close()

    async def serve(self) -> None:
        """Start (unless started) and run until ``shutdown`` completes.

        After a shutdown, ``serve()`` starts the server again.
        """
        if self._state is not ServerState.RUNNING:
            await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    def listen_and_serve(self) -> None:
        """Run the server in a new event loop until shutdown (Go ``ListenAndServe``).

        SIGINT and SIGTERM shut it down gracefully. With ``workers > 1`` it forks that many
        processes sharing the port.
        """
        # A call-time import, not a module one: _runner sits above this module (it imports
        # Server), and this convenience method reaches up to it only when called.
        from ._runner import run  # noqa: PLC0415

        run(self)

    async def _sweep(self) -> None:
        # One timer for every connection instead of one per connection.
        periods = [t / 4 for t in (self.timeout, self.max_session_time) if t]
        interval = max(0.05, min(1.0, *periods))
        while True:
            await asyncio.sleep(interval)
            now = self._loop_time()
            for session in list(self._sessions):
                session.check_deadline(now)

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting and close every session gracefully.

        Sessions between commands get ``421 4.3.0`` and close; a message in DATA finishes
        and its client gets the handler's reply first. At the deadline every connection is
        dropped, except that a handler already running is waited for and its reply sent: its
        decision is final, and a lost 250 would make the client deliver the message twice.

        Args:
            timeout: Seconds to wait for sessions; None waits without limit.

        Returns:
            True if every session ended by itself before the deadline.
        """
        if self._state is not ServerState.RUNNING:
            return True
        if self._shutting_down:
            assert self._stopped is not None
            await self._stopped.wait()
            return self._graceful
        self._shutting_down = True
        self._graceful = True
        for srv in self._servers:
            srv.close()
        # CPython gh-109564: a connection accepted in the loop iteration before close() fails
        # to attach to the closed server, and its socket stays open (the client hangs) until
        # the cyclic garbage collector runs. Let those accept tasks run, then collect once.
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        for session in list(self._sessions):
            session.request_shutdown()
        if self._sessions:
            assert self._drained is not None
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except asyncio.TimeoutError:
                self._graceful = False
                running = [t for s in list(self._sessions) if (t := s.shutdown_deadline())]
                if running:
                    self.logger.warning(
                        "shutdown deadline passed; waiting for %d running handlers", len(running)
                    )
                    # Those sessions close themselves once the reply is written.
                    await asyncio.gather(*running, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for srv in self._servers:
            # Python 3.12+ waits here for every transport; aborted ones close at once.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 5)
        self._servers = []
        self._remove_unix()
        self._state = ServerState.STOPPED
        if self._stopped is not None:
            self._stopped.set()
        self.logger.info("stopped (%s)", "graceful" if self._graceful else "deadline")
        return self._graceful
