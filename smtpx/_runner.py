"""Run a Server in the foreground: event loop, signals, and SO_REUSEPORT worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Server

__all__ = ["SHUTDOWN_GRACE", "run"]

SHUTDOWN_GRACE = 10.0


async def _serve_until_signal(server: Server) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    serving = asyncio.ensure_future(server.serve())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        server.logger.info("signal received, shutting down")
        await server.shutdown(SHUTDOWN_GRACE)
    stopping.cancel()
    await serving


def _run_one(server: Server, loop_factory: str | None) -> None:
    if loop_factory == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 (optional extra)

        uvloop.run(_serve_until_signal(server))
    else:
        asyncio.run(_serve_until_signal(server))


def run(server: Server, loop_factory: str | None = None) -> None:
    """Serve until SIGINT/SIGTERM; with ``server.workers > 1`` fork that many processes.

    Args:
        server: The configured server.
        loop_factory: ``"uvloop"`` to run on uvloop (the ``smtpx[uvloop]`` extra).
    """
    if server.workers <= 1:
        _run_one(server, loop_factory)
        return
    if not hasattr(os, "fork"):
        raise RuntimeError("workers > 1 needs os.fork (POSIX)")
    children: list[int] = []
    for _ in range(server.workers):
        pid = os.fork()
        if pid == 0:  # child: its own loop and listening socket on the shared port
            code = 0
            try:
                _run_one(server, loop_factory)
            except BaseException:
                import traceback  # noqa: PLC0415

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    if status:
        sys.exit(status)
