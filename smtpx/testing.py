r"""Run a real smtpx server in tests: ``Controller`` (thread), ``AsyncController`` (same loop).

What aiosmtpd's ``Controller`` is to its users, typed. A controller builds a
:class:`smtpx.Server` on a free loopback port, starts it, waits until it accepts connections,
records every envelope the handler accepted, and stops it gracefully::

    import smtplib
    from smtpx.testing import Controller

    with Controller() as smtpd:
        with smtplib.SMTP(smtpd.host, smtpd.port) as client:
            client.sendmail("a@example.org", ["b@example.org"], "Subject: hi\n\nhello\n")
        (envelope,) = smtpd.envelopes

``Controller`` runs the server's event loop in a background thread, so blocking clients
(``smtplib``, ``swaks``) work from the test. ``AsyncController`` runs the server on the loop
that is already running (``async with``); drive it with an async client such as aiosmtplib,
since a blocking client would stall the very loop the server needs.

The pytest plugin (:mod:`smtpx.pytest_plugin`, registered as the ``pytest11`` entry point
``smtpx``) provides the ``smtpx_server`` and ``smtpx_server_factory`` fixtures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import smtplib
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from typing_extensions import Self

from .envelope import Envelope
from .handler import Handler, HandlerFunc, Middleware, SyncHandlerFunc
from .responses import PerRecipient, Response
from .server import Server, ServerState

__all__ = [
    "DEFAULT_HOSTNAME",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_STOP_TIMEOUT",
    "AsyncController",
    "Controller",
]

_T = TypeVar("_T")

DEFAULT_HOSTNAME = "smtpx.test"
"""The server's name in the greeting when none is given."""
DEFAULT_READY_TIMEOUT = 10.0
"""Seconds ``start`` waits for the server to listen before raising ``TimeoutError``."""
DEFAULT_STOP_TIMEOUT = 5.0
"""Seconds ``stop`` gives open sessions to finish (``Server.shutdown``) before dropping them."""
_JOIN_MARGIN = 10.0  # beyond the shutdown deadline: running handlers are waited for (server.py)


def _loopback_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _ControllerBase:
    """What both controllers share: the server, its address and the recorded envelopes."""

    def __init__(
        self,
        handler: Handler | HandlerFunc | SyncHandlerFunc | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = DEFAULT_HOSTNAME,
        middlewares: Sequence[Middleware] = (),
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        server_class: type[Server] = Server,
        **options: Any,
    ) -> None:
        if "addr" in options:
            raise TypeError("give host and port, not addr")
        self.host = host
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._envelopes: list[Envelope] = []
        self._recorded = threading.Condition()
        self._listeners: list[Callable[[], None]] = []
        # The recorder is the innermost middleware: it sees the envelope as the handler got it
        # (after every other middleware) and the handler's verdict.
        self.server = server_class(
            hostname=hostname,
            addr=_loopback_addr(host, port),
            handler=handler,
            middlewares=[*middlewares, self._recorder],
            **options,
        )

    def _recorder(self, next_: HandlerFunc) -> HandlerFunc:
        async def record(envelope: Envelope) -> Response | None:
            response = await next_(envelope)
            # LMTP: a PerRecipient that accepts any recipient delivered the message.
            if (
                response is None
                or response.is_success
                or (
                    isinstance(response, PerRecipient)
                    and any(r.is_success for r in response.replies)
                )
            ):
                if envelope.spooled:
                    # Its spool file goes when the handler returns: keep the bytes for the test.
                    await asyncio.to_thread(lambda: envelope.data)
                with self._recorded:
                    self._envelopes.append(envelope)
                    self._recorded.notify_all()
                    listeners = list(self._listeners)
                for listener in listeners:
                    listener()
            return response

        return record

    @property
    def port(self) -> int:
        """The port the server listens on (a free one unless ``port`` was given)."""
        return self.server.port

    @property
    def envelopes(self) -> list[Envelope]:
        """A snapshot of the envelopes accepted so far, oldest first (thread-safe).

        An envelope is recorded when the handler (after every middleware) accepted it, that is
        returned None or a 2xx reply, and before the client sees that reply: once
        ``smtplib.SMTP.sendmail`` returns, its envelope is here.
        """
        with self._recorded:
            return list(self._envelopes)

    def clear(self) -> None:
        """Forget the envelopes recorded so far."""
        with self._recorded:
            self._envelopes.clear()


class Controller(_ControllerBase):
    """A real smtpx ``Server`` on a loopback port, run by its own loop in a background thread.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``start`` returns once the
    listening socket is bound and registered with the loop, so a connection made right after
    it gets the greeting; an error while starting (a port in use, an unresolvable host, an
    exception from the server's ``start``) is raised in the calling thread.

    Args:
        handler: The server's handler (async or plain function, or a ``Handler``); by default
            every message is accepted. Envelopes the handler accepts are recorded in
            ``envelopes`` either way.
        host: Loopback address to listen on, ``"127.0.0.1"`` or ``"::1"``.
        port: Port to listen on; 0 picks a free one (see ``port``).
        hostname: Name in the greeting and EHLO reply.
        middlewares: The server's middlewares; the recorder is appended innermost.
        ready_timeout: Seconds ``start`` waits for the server before ``TimeoutError``.
        stop_timeout: Seconds ``stop`` gives sessions to finish before dropping them.
        server_class: ``Server`` or a subclass of it.
        **options: Any other ``smtpx.Server`` option (``tls``, ``max_size``, ...).

    Attributes:
        server: The ``smtpx.Server``; use ``call`` to run its coroutines on its loop.
        host: The address it listens on.
    """

    def __init__(
        self,
        handler: Handler | HandlerFunc | SyncHandlerFunc | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = DEFAULT_HOSTNAME,
        middlewares: Sequence[Middleware] = (),
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        server_class: type[Server] = Server,
        **options: Any,
    ) -> None:
        super().__init__(
            handler,
            host=host,
            port=port,
            hostname=hostname,
            middlewares=middlewares,
            ready_timeout=ready_timeout,
            stop_timeout=stop_timeout,
            server_class=server_class,
            **options,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._start_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Start the server thread and wait until the server listens.

        Returns:
            The controller itself.

        Raises:
            OSError: The address could not be bound (for example, the port is in use).
            TimeoutError: The server did not listen within ``ready_timeout`` seconds.
            RuntimeError: The controller was already started.
            Exception: Whatever else the server's ``start`` raised.
        """
        if self._thread is not None:
            raise RuntimeError("the controller was already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="smtpx-controller", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.ready_timeout):
            loop, task = self._loop, self._start_task
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)
            self._thread.join(_JOIN_MARGIN)
            raise TimeoutError(f"smtpx server did not start within {self.ready_timeout} s")
        if self._error is not None:
            self._thread.join(_JOIN_MARGIN)
            error, self._error = self._error, None
            raise error
        return self

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            try:
                self._start_task = loop.create_task(self.server.start())
                loop.run_until_complete(self._start_task)
            except BaseException as exc:  # handed to the thread that called start()
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            self._close_loop(loop)

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        # Whatever the test left running on the loop (a serve() future, a session dropped at
        # the deadline) is cancelled and awaited, so nothing is destroyed while pending.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        with contextlib.suppress(asyncio.TimeoutError):
            # A plain handler stuck in its worker thread must not hold the test forever.
            loop.run_until_complete(
                asyncio.wait_for(loop.shutdown_default_executor(), _JOIN_MARGIN)
            )
        asyncio.set_event_loop(None)
        loop.close()

    def stop(self, timeout: float | None = None) -> bool:
        """Shut the server down gracefully, stop its loop and join its thread.

        Safe to call twice, or after the server was shut down through ``call``.

        Args:
            timeout: Seconds sessions get to finish (``Server.shutdown``); defaults to
                ``stop_timeout``.

        Returns:
            True if every session ended by itself before the deadline.

        Raises:
            RuntimeError: The thread did not end (a handler that never returns).
        """
        thread, loop = self._thread, self._loop
        if thread is None or loop is None or not thread.is_alive():
            return True
        deadline = self.stop_timeout if timeout is None else timeout
        graceful = True
        if self.server.state is ServerState.RUNNING:
            future = asyncio.run_coroutine_threadsafe(self.server.shutdown(deadline), loop)
            try:
                graceful = future.result(deadline + _JOIN_MARGIN)
            except concurrent.futures.TimeoutError:
                graceful = False
        loop.call_soon_threadsafe(loop.stop)
        thread.join(deadline + _JOIN_MARGIN)
        if thread.is_alive():
            raise RuntimeError("the smtpx server thread did not stop")
        return graceful

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (running in the background thread once started)."""
        if self._loop is None:
            raise RuntimeError("the controller is not started")
        return self._loop

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = 30.0) -> _T:
        """Run ``coro`` on the server's loop and return its result, e.g. ``server.shutdown()``.

        Args:
            coro: The coroutine to run.
            timeout: Seconds to wait for it; None waits without limit.
        """
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_for_envelopes(self, count: int, timeout: float = 10.0) -> list[Envelope]:
        """Block until at least ``count`` envelopes were recorded, then return them all.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self._envelopes) >= count, timeout):
                raise TimeoutError(f"{len(self._envelopes)} of {count} envelopes arrived")
            return list(self._envelopes)

    def smtp(self, *, timeout: float = 10.0, local_hostname: str = "client.test") -> smtplib.SMTP:
        """A connected ``smtplib.SMTP`` client; close it (or use ``with``) when done."""
        return smtplib.SMTP(self.host, self.port, local_hostname=local_hostname, timeout=timeout)


class AsyncController(_ControllerBase):
    """A real smtpx ``Server`` on a loopback port, on the event loop already running.

    ``async with AsyncController() as smtpd:`` starts it (bind errors are raised there) and
    shuts it down gracefully on exit. It takes the same arguments as ``Controller``. The
    server shares the caller's loop: talk to it with an async client (aiosmtplib) or from a
    worker thread (``asyncio.to_thread``), never with a blocking call on the loop.
    """

    async def start(self) -> Self:
        """Start listening on the running loop.

        Raises:
            OSError: The address could not be bound.
            TimeoutError: The server did not listen within ``ready_timeout`` seconds.
        """
        await asyncio.wait_for(self.server.start(), self.ready_timeout)
        return self

    async def stop(self, timeout: float | None = None) -> bool:
        """Shut the server down gracefully; True if every session ended before the deadline."""
        return await self.server.shutdown(self.stop_timeout if timeout is None else timeout)

    async def wait_for_envelopes(self, count: int, timeout: float = 10.0) -> list[Envelope]:
        """Wait until at least ``count`` envelopes were recorded, then return them all.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(arrived.set)

        with self._recorded:
            self._listeners.append(wake)
        deadline = loop.time() + timeout
        try:
            while True:
                snapshot = self.envelopes
                if len(snapshot) >= count:
                    return snapshot
                await asyncio.wait_for(arrived.wait(), max(0.0, deadline - loop.time()))
                arrived.clear()
        except asyncio.TimeoutError:
            raise TimeoutError(f"{len(self.envelopes)} of {count} envelopes arrived") from None
        finally:
            with self._recorded:
                self._listeners.remove(wake)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
