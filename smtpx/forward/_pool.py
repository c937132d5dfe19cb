"""The bounded pool of backend connections, reused across transactions."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import TYPE_CHECKING

from ._client import _Backend, _BackendError, _in_task, _timeout

if TYPE_CHECKING:
    from ._handler import Forward


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
        if self._open >= self._fw.pool_size and asyncio.current_task() is None:
            await _in_task()  # for _timeout below; a connection may come back meanwhile
            return await self.get()
        if self._open >= self._fw.pool_size:
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
                    with contextlib.suppress(OSError, RuntimeError, _BackendError):
                        backend.send_raw(b"QUIT\r\n")
                self._drop(backend)
            else:
                keep.append(backend)
        self._idle = keep

    def close(self) -> None:
        for backend in self._idle:
            backend.close()
        self._open -= len(self._idle)
        self._idle = []
