"""Handler faults: exceptions, non-final replies, slow and blocking handlers, and shutdown.

What a broken or stuck handler costs must stay with its own message: its client gets a reply
(451 for a bug, the handler's own when it finally answers), every other client is served
meanwhile, and a shutdown waits for a running handler's decision instead of dropping it.
Wrong return *types* are covered by ``tests/edges/test_guard.py``, a hook's wrong return by
``tests/server/test_hooks.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import smtplib
import threading
from collections.abc import Callable

import pytest

from smtpx import Address, Envelope, Response, new_response
from smtpx.hooks import Params, SessionView
from tests.edges.edgeutil import Conn, connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
ERROR_451 = (451, b"4.3.0 Requested action aborted: local error in processing")
ERROR_LINE = b"451 4.3.0 Requested action aborted: local error in processing\r\n"


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\n\r\nbody\r\n".encode()


def transaction(client: smtplib.SMTP, subject: str) -> tuple[int, bytes]:
    client.mail("a@b.example")
    client.rcpt("r@x.example")
    return client.data(message(subject))


def start_data(c: Conn, subject: str) -> None:
    """Send a whole message on a raw connection, without reading the reply to the dot."""
    c.open_data()
    c.send(message(subject) + b".\r\n")


class Boom(Exception):
    pass


def sync_raises(envelope: Envelope) -> Response | None:
    if b"boom" in envelope.data:
        raise Boom("sync handler bug")
    return None


async def async_raises(envelope: Envelope) -> Response | None:
    await asyncio.sleep(0)
    if b"boom" in envelope.data:
        raise Boom("async handler bug")
    return None


async def async_raises_at_once(envelope: Envelope) -> Response | None:
    if b"boom" in envelope.data:
        raise Boom("handler bug before any await")
    return None


@pytest.mark.parametrize("handler", [sync_raises, async_raises, async_raises_at_once])
def test_handler_exception_gets_451_and_the_session_goes_on(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture, handler: Callable[..., object]
) -> None:
    caplog.set_level(logging.INFO)
    srv = make_server(handler=handler)
    with srv.smtp() as client:
        client.ehlo()
        assert transaction(client, "boom") == ERROR_451
        assert transaction(client, "fine") == (250, b"2.0.0 Message accepted")
        assert transaction(client, "boom again")[0] == 451
        assert client.noop()[0] == 250
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2  # logged once per failure, with the traceback
    assert all(r.exc_info is not None and r.exc_info[0] is Boom for r in errors)
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    assert wait_until(lambda: active(srv) == 0)


@pytest.mark.parametrize("code", [354, 334])
def test_non_final_reply_from_a_handler_becomes_451(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    async def handler(envelope: Envelope) -> Response | None:
        return Response(code, "", "weird")

    srv = make_server(handler=handler)
    with srv.smtp() as client:
        client.ehlo()
        assert transaction(client, "x") == ERROR_451  # RFC 5321 4.2.5: only a final reply
        assert client.noop()[0] == 250
    assert any("non-final" in r.getMessage() for r in caplog.records)


def test_handler_slower_than_the_timeout_still_answers(make_server: MakeServer) -> None:
    """``timeout`` bounds the client's silences, not the handler's work."""

    async def slow(envelope: Envelope) -> Response | None:
        await asyncio.sleep(1.5)
        return new_response(250, "finally", "2.0.0")

    srv = make_server(handler=slow, timeout=0.5)
    with srv.smtp() as client:
        client.ehlo()
        assert transaction(client, "slow") == (250, b"2.0.0 finally")
        # The session timeout starts again only after the reply.
        assert client.noop()[0] == 250
    assert len(srv.received) == 1


def test_blocked_sync_handlers_stall_neither_the_loop_nor_other_clients(
    make_server: MakeServer,
) -> None:
    """More blocked plain handlers than the default executor has threads.

    Each blocks its worker thread (as a handler stuck on a hung disk or a slow database would)
    beyond ``timeout``. The event loop still answers every other client's commands at once;
    messages wait for a free thread, and every client gets its reply once the handlers return.
    """
    release = threading.Event()
    blocked = threading.Semaphore(0)
    stored: list[bytes] = []
    lock = threading.Lock()

    def handler(envelope: Envelope) -> Response | None:
        if b"block" in envelope.data:
            blocked.release()
            release.wait(20)
        with lock:
            stored.append(envelope.data)
        return None

    srv = make_server(handler=handler, timeout=0.5, max_clients=50)
    count = 10  # the default executor has min(32, cpus + 4) threads: 6 on 2 cores
    conns = [Conn(srv.port) for _ in range(count)]
    try:
        for i, c in enumerate(conns):
            start_data(c, f"block {i}")
        assert blocked.acquire(timeout=10)  # at least one handler is stuck in its thread
        # Other clients: commands are answered while every handler thread may be taken.
        for _ in range(3):
            with srv.smtp() as other:
                other.ehlo()
                other.mail("a@b.example")
                other.rcpt("r@x.example")
                assert other.noop()[0] == 250
                assert other.rset()[0] == 250
        assert [c.pending(0.01) for c in conns] == [b""] * count  # no reply, no 421 timeout
        release.set()
        assert [c.reply() for c in conns] == [b"250 2.0.0 Message accepted\r\n"] * count
    finally:
        for c in conns:
            c.close()
    assert len(stored) == count


def test_shutdown_waits_for_a_blocked_sync_handler_and_sends_its_reply(
    make_server: MakeServer,
) -> None:
    """The shutdown deadline passes while a plain handler blocks: idle clients are dropped,
    the blocked one still gets its 250, and the message is stored once."""
    release = threading.Event()
    entered = threading.Event()
    stored: list[bytes] = []

    def handler(envelope: Envelope) -> Response | None:
        entered.set()
        release.wait(20)
        stored.append(envelope.data)
        return None

    srv = make_server(handler=handler, timeout=0.5)
    with connect(srv.port) as busy, connect(srv.port) as idle:
        idle.reply()
        start_data(busy, "blocked at shutdown")
        assert entered.wait(10)
        done: concurrent.futures.Future[bool] = asyncio.run_coroutine_threadsafe(
            srv.server.shutdown(0.3), srv.loop
        )
        assert idle.reply().startswith(b"421 4.3.0")  # between commands: told and closed
        assert idle.eof()
        assert not done.done() and busy.pending(0.5) == b""  # deadline passed, still waiting
        release.set()
        assert busy.reply() == b"250 2.0.0 Message accepted\r\n"
        assert busy.eof()
        assert done.result(10) is False  # the deadline was needed
    assert len(stored) == 1


class RaisingHooks:
    """Every session hook raises at ``where`` (plain hooks run in a thread, async ones not)."""

    def __init__(self, where: str, *, in_thread: bool) -> None:
        self.where = where
        self.in_thread = in_thread

    async def _maybe_raise(self, name: str) -> None:
        if name == self.where:
            if self.in_thread:
                await asyncio.to_thread(self._raise, name)
            self._raise(name)

    def _raise(self, name: str) -> None:
        raise Boom(f"{name} hook bug")

    async def connect(self, session: SessionView) -> Response | None:
        await self._maybe_raise("connect")
        return None

    async def helo(self, session: SessionView, name: str) -> Response | None:
        await self._maybe_raise("helo")
        return None

    async def mail(self, session: SessionView, address: Address, params: Params) -> Response | None:
        await self._maybe_raise("mail")
        return None

    async def rcpt(self, session: SessionView, address: Address, params: Params) -> Response | None:
        await self._maybe_raise("rcpt")
        return None


@pytest.mark.parametrize("in_thread", [False, True], ids=["async", "thread"])
@pytest.mark.parametrize("where", ["connect", "helo", "mail", "rcpt"])
def test_hook_exception_gets_451_and_frees_the_slot(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture, where: str, in_thread: bool
) -> None:
    caplog.set_level(logging.INFO)
    srv = make_server(hooks=[RaisingHooks(where, in_thread=in_thread)])
    steps = {
        "helo": b"EHLO client.test\r\n",
        "mail": b"MAIL FROM:<a@b.example>\r\n",
        "rcpt": b"RCPT TO:<r@x.example>\r\n",
    }
    with connect(srv.port) as c:
        greeting = c.reply()
        if where == "connect":
            # No dialogue can start: the refusal replaces the greeting, and the client is gone.
            assert greeting == ERROR_LINE
            assert c.eof()
        else:
            assert greeting.startswith(b"220 ")
            for name, line in steps.items():
                reply = c.cmd(line)
                if name == where:
                    assert reply == ERROR_LINE
                    break
                assert reply.startswith(b"250")
            assert c.cmd(b"NOOP\r\n").startswith(b"250")  # the session goes on
            assert c.cmd(b"QUIT\r\n").startswith(b"221")
    assert wait_until(lambda: active(srv) == 0)
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"RaisingHooks.{where}" in error.getMessage()
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
