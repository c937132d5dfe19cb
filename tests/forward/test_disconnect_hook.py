"""The ``disconnect(session)`` hook: once per connection, however it ends."""

from __future__ import annotations

import threading
from collections.abc import Callable

from smtpx.hooks import SessionView
from tests.edges.edgeutil import wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


class Seen:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lock = threading.Lock()

    async def disconnect(self, session: SessionView, /) -> None:
        with self.lock:
            self.ids.append(session.connection_id)


class Broken:
    def disconnect(self, session: SessionView, /) -> None:  # a plain one, in a thread
        raise RuntimeError("boom")


def test_disconnect_hook_runs_once_per_connection(make_server: MakeServer) -> None:
    seen = Seen()
    srv = make_server(hooks=[Broken(), seen])
    with srv.smtp() as c:  # QUIT
        c.ehlo()
        c.mail("a@c.test")
    c2 = srv.smtp()
    c2.ehlo()
    c2.close()  # gone without QUIT
    with srv.raw() as raw:
        raw.reply()  # gone right after the greeting
    # A hook that raises is logged; the next one still runs.
    assert wait_until(lambda: len(seen.ids) == 3, 5)
    assert sorted(seen.ids) == [1, 2, 3]
