"""Run a Server in the foreground: event loop, signals, and SO_REUSEPORT worker processes.

This module sits above ``smtpx.server``: it imports ``Server``; ``server`` imports it only
inside ``Server.listen_and_serve``, at call time, so the module import graph has no cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence

from .server import Server, parse_addr

__all__ = ["SHUTDOWN_GRACE", "bind_sockets", "run"]

SHUTDOWN_GRACE = 10.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def bind_sockets(addr: str, *, reuse_port: bool, backlog: int = 1024) -> list[socket.socket]:
    """Bind listening sockets for ``addr`` like ``loop.create_server`` does (every family).

    Raises:
        OSError: The address cannot be bound.
    """
    host, port = parse_addr(addr)
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE, proto=socket.IPPROTO_TCP
    )
    socks: list[socket.socket] = []
    try:
        for family, type_, proto, _, sockaddr in dict.fromkeys(infos):
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and socks[0] is not sock:
                # Port 0 with several families: use the port the first one got.
                sockaddr = (sockaddr[0], socks[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


async def _serve_until_signal(server: Server, socks: Sequence[socket.socket] | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    # A worker starts with these signals blocked (see run); asyncio handles them from now on.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    await server.start(sock=socks)
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        server.logger.info("signal received, shutting down (pid %d)", os.getpid())
        await server.shutdown(SHUTDOWN_GRACE)
    stopping.cancel()
    await serving


def _run_one(
    server: Server, loop_factory: str | None, socks: Sequence[socket.socket] | None = None
) -> None:
    if loop_factory == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 (optional extra)

        uvloop.run(_serve_until_signal(server, socks))
    else:
        asyncio.run(_serve_until_signal(server, socks))


def run(server: Server, loop_factory: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; with ``server.workers > 1`` fork that many processes.

    Each worker gets its own listening socket on the same port (SO_REUSEPORT), so the kernel
    spreads connections over them. The sockets are bound here, before forking, so a bad
    address fails at once in the calling process. SIGINT/SIGTERM to this process are passed
    to every worker, which shuts down gracefully; if a worker dies on its own the others are
    stopped too and the exit status is the failed worker's.

    Args:
        server: The configured server.
        loop_factory: ``"uvloop"`` to run on uvloop (the ``smtpx[uvloop]`` extra).

    Raises:
        OSError: The address cannot be bound.
    """
    if server.workers <= 1:
        _run_one(server, loop_factory)
        return
    if not hasattr(os, "fork") or not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("workers > 1 needs os.fork and SO_REUSEPORT")
    first = bind_sockets(server.addr, reuse_port=True)
    port = first[0].getsockname()[1]
    host = server.addr.rpartition(":")[0]
    per_worker = [first] + [
        bind_sockets(f"{host}:{port}", reuse_port=True) for _ in range(server.workers - 1)
    ]
    # Block the stop signals while forking: a worker must never run the parent's handler,
    # and the parent must not die before it can forward a signal to the workers.
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    children: list[int] = []
    for index, socks in enumerate(per_worker):
        pid = os.fork()
        if pid == 0:  # worker: its own loop and its own listening socket(s)
            code = 0
            try:
                for sig in _SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                for other, other_socks in enumerate(per_worker):
                    if other != index:
                        for sock in other_socks:
                            sock.close()
                _run_one(server, loop_factory, socks)
            except BaseException:
                import traceback  # noqa: PLC0415

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    # The parent never accepts: a listening socket left open here would get its share of
    # the connections and never answer them.
    for socks in per_worker:
        for sock in socks:
            sock.close()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in _SIGNALS:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    server.logger.info("%d workers on port %d: %s", len(children), port, children)
    status = 0
    alive = set(children)
    while alive:
        pid, wait_status = os.wait()
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code and not status:
            status = code if code > 0 else 128 - code
            if not stopping:
                server.logger.error("worker %d exited with %d; stopping the others", pid, code)
                forward(signal.SIGTERM, None)
    if status:
        sys.exit(status)
