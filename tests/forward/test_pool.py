"""The backend connection pool on its own: a race the CI found (py312, 1 run in 6)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

from smtpx.forward import Forward
from smtpx.forward._client import _Backend
from smtpx.forward._pool import _Pool


def test_a_connection_given_back_while_get_yields_is_taken_not_waited_for() -> None:
    # A hook's first step runs outside any task; get() then yields once to get into one. A
    # connection that came back during that yield went to the idle list while get() went on
    # to wait for a waker that never came: the next MAIL got 451 4.4.1 after the timeout.
    async def main() -> object:
        pool = _Pool(Forward("smtp://127.0.0.1:1", pool_size=1, timeout=0.5))
        pool._open = 1  # the only connection is in use
        backend = cast(_Backend, SimpleNamespace(closed=False, used=False, idle_since=0.0))
        getting = pool.get()
        loop = asyncio.get_running_loop()
        first: asyncio.Future[object] = loop.create_future()
        # A loop callback runs outside any task, as the session runs a hook's first step.
        loop.call_soon(lambda: first.set_result(getting.send(None)))
        assert await first is None  # it yielded to get into a task
        pool.put(backend)  # the other transaction ends meanwhile
        return await asyncio.ensure_future(getting)

    assert asyncio.run(main()) is not None
