"""Last-resort guards: a bad handler return or a bug in a callback costs one connection only.

Issue 15 defect 1 (a handler returning the wrong type hung the client and leaked its slot) and
issue 9 item 5 (an exception escaping a session callback killed the connection with no reply,
or broke the handler task when it came pipelined after the final dot). Everything runs over a
real loopback socket; the "core bug" is a patched core method that raises in-process.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smtpx import Envelope, Response, _session
from smtpx._proxy import ProxyHeaderReader
from smtpx._session import Session
from smtpx.middleware import logger, recover
from smtpx.protocol import Connection
from tests.edges.edgeutil import TLSMaterial, connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
MSG = b"Subject: x\r\n\r\nbody\r\n"


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def shutdown(srv: ServerThread) -> bool:
    """``Server.shutdown()``'s verdict: True when every session ended by itself."""
    return bool(srv.call(srv.server.shutdown(5)))


def send(srv: ServerThread) -> tuple[int, bytes]:
    """One message with smtplib; returns the reply to the final dot."""
    with smtplib.SMTP(srv.host, srv.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("r@x.example")
        reply = client.data(MSG)
        client.quit()
    return reply


@pytest.fixture
def errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[logging.LogRecord]]]:
    caplog.set_level(logging.INFO)

    def error_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno >= logging.ERROR]

    yield error_records
    # asyncio must never have seen an exception of ours ("Fatal error: protocol...").
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


# ------------------------------------------------------------- handler return values
def sync_returns_str(envelope: Envelope) -> Response | None:
    return "250 OK"  # type: ignore[return-value]  # the aiosmtpd convention, a user's slip


async def async_returns_int_after_await(envelope: Envelope) -> Response | None:
    await asyncio.sleep(0.01)
    return 250  # type: ignore[return-value]  # the slip this test is about


async def async_returns_tuple_at_once(envelope: Envelope) -> Response | None:
    return (250, "OK")  # type: ignore[return-value]  # the slip this test is about


@pytest.mark.parametrize(
    ("handler", "type_name"),
    [
        (sync_returns_str, "str"),
        (async_returns_int_after_await, "int"),
        (async_returns_tuple_at_once, "tuple"),
    ],
)
def test_wrong_return_type_gets_451_and_names_the_handler(
    make_server: MakeServer,
    errors: Callable[[], list[logging.LogRecord]],
    handler: Any,
    type_name: str,
) -> None:
    srv = make_server(handler=handler)
    assert send(srv) == (451, b"4.3.0 Requested action aborted: local error in processing")
    (record,) = errors()
    message = record.getMessage()
    assert handler.__qualname__ in message and f"returned {type_name}" in message, message
    assert record.exc_info is None  # one clear line, not a traceback to dig through
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


def test_many_wrong_returns_do_not_use_up_the_slots(
    make_server: MakeServer, errors: Callable[[], list[logging.LogRecord]]
) -> None:
    good: list[Envelope] = []

    async def handler(envelope: Envelope) -> Response | None:
        await asyncio.sleep(0)
        if b"good" in envelope.data:
            good.append(envelope)
            return None
        return "250 OK"  # type: ignore[return-value]  # the slip this test is about

    srv = make_server(handler=handler, max_clients=3)
    for _ in range(3 + 4):
        assert send(srv)[0] == 451
    with smtplib.SMTP(srv.host, srv.port, local_hostname="client.test", timeout=5) as client:
        assert client.sendmail("a@b.example", ["r@x.example"], b"Subject: good\r\n\r\n.") == {}
    assert len(good) == 1
    assert len(errors()) == 7
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


def test_wrong_return_in_a_middleware_names_it_and_recover_and_logger_cope(
    make_server: MakeServer, errors: Callable[[], list[logging.LogRecord]]
) -> None:
    def bad_middleware(next_: Any) -> Any:
        async def wrapped(envelope: Envelope) -> Any:
            await next_(envelope)
            return b"250 OK"

        return wrapped

    srv = make_server(middlewares=[logger(), recover, bad_middleware])
    assert send(srv)[0] == 451
    assert any("bad_middleware" in r.getMessage() + str(r.exc_info) for r in errors())
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


class ForeignAwaitable:
    """What another framework's awaitable looks like to asyncio: it yields a non-future."""

    def __await__(self) -> Any:
        yield "a trio checkpoint"


def test_handler_awaiting_what_asyncio_cannot_wait_for_gets_451(
    make_server: MakeServer, errors: Callable[[], list[logging.LogRecord]]
) -> None:
    other_loop = asyncio.new_event_loop()

    async def foreign(envelope: Envelope) -> Response | None:
        await ForeignAwaitable()
        return None

    async def other_loops_future(envelope: Envelope) -> Response | None:
        await asyncio.sleep(0)
        await other_loop.create_future()
        return None

    try:
        for handler in (foreign, other_loops_future):
            srv = make_server(handler=handler)
            assert send(srv)[0] == 451
            assert wait_until(lambda srv=srv: active(srv) == 0)  # type: ignore[misc]
            assert shutdown(srv) is True
    finally:
        other_loop.close()
    assert len(errors()) == 2
    assert all("handler failed" in r.getMessage() for r in errors())


# -------------------------------------------------------------- core bugs in callbacks
def boom(*args: Any) -> Any:
    raise RuntimeError("planted core bug")


def plant(monkeypatch: pytest.MonkeyPatch, name: str, method: Callable[..., Any]) -> None:
    """Make every new session's core run ``method`` as ``Connection.<name>``.

    In a subclass the session makes, since the compiled core is an immutable (cdef) type.
    """
    planted = type("PlantedConnection", (Connection,), {name: method})
    monkeypatch.setattr(_session, "Connection", planted)


def test_core_exception_while_reading_gets_451_and_frees_the_slot(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    real = Connection.receive_data

    def receive_data(self: Connection, data: bytes) -> None:
        if b"XBOOM" in data:
            boom()
        real(self, data)

    plant(monkeypatch, "receive_data", receive_data)
    srv = make_server(max_clients=1)
    with connect(srv.port) as c:
        assert c.reply().startswith(b"220")
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
        assert c.cmd(b"XBOOM\r\n").startswith(b"451 4.3.0")
        assert c.eof()
    (record,) = errors()
    assert "internal error in reading" in record.getMessage()
    assert record.exc_info is not None and "planted core bug" in str(record.exc_info[1])
    assert wait_until(lambda: active(srv) == 0)
    assert send(srv)[0] == 250  # the one slot is free again
    assert shutdown(srv) is True


def test_core_exception_pipelined_after_the_dot_keeps_the_reply(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    armed: list[bool] = []
    real = Connection.next_event

    def next_event(self: Connection) -> Any:
        if armed:
            armed.clear()
            boom()
        return real(self)

    async def handler(envelope: Envelope) -> Response | None:
        await asyncio.sleep(0.05)  # the handler task, not the first step inline
        armed.append(True)
        return None

    async def sync_like(envelope: Envelope) -> Response | None:
        armed.append(True)  # no await: runs inline from the read callback
        return None

    plant(monkeypatch, "next_event", next_event)
    for h in (handler, sync_like):
        srv = make_server(handler=h)
        with connect(srv.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test\r\n")
            c.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<r@x.example>\r\nDATA\r\n")
            assert [c.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
            # RFC 2920 3.1: the message content may open a group that NOOP ends.
            c.send(b"Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n")
            assert c.reply().startswith(b"250 2.0.0 Message accepted")
            assert c.reply().startswith(b"451 4.3.0")
            assert c.eof()
        assert wait_until(lambda srv=srv: active(srv) == 0)  # type: ignore[misc]
        assert shutdown(srv) is True
    assert len(errors()) == 2
    assert all("the handler's reply" in r.getMessage() for r in errors())


def test_core_exception_at_end_of_input(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    real = Connection.receive_data

    def receive_data(self: Connection, data: bytes) -> None:
        if not data:
            boom()
        real(self, data)

    plant(monkeypatch, "receive_data", receive_data)
    srv = make_server()
    with connect(srv.port) as c:
        c.reply()
        c.sock.shutdown(1)  # SHUT_WR: eof_received
        assert c.reply().startswith(b"451 4.3.0")
        assert c.eof()
    assert len(errors()) == 1
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


def test_exception_in_the_greeting_closes_and_frees_the_slot(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    plant(monkeypatch, "greeting", boom)
    srv = make_server(max_clients=1)
    for _ in range(3):
        with connect(srv.port) as c:
            assert c.eof() and c.buf.startswith(b"451 4.3.0")
    assert len(errors()) == 3
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


def test_exception_reading_the_proxy_header(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    monkeypatch.setattr(ProxyHeaderReader, "feed", boom)
    srv = make_server(proxy_on=True, max_clients=1)
    for _ in range(2):
        with connect(srv.port) as c:
            c.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n")
            assert c.eof() and c.buf == b""
    assert len(errors()) == 2
    assert "PROXY" in errors()[0].getMessage()
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True


def test_exception_in_the_deadline_check_keeps_the_sweeper(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
) -> None:
    srv = make_server(timeout=1.5)  # long enough to plant the bug before it fires
    with connect(srv.port) as bad, connect(srv.port) as good:
        bad.reply()
        good.reply()
        assert wait_until(lambda: active(srv) == 2)
        first = min(s.connection_id for s in srv.server._sessions)
        real = Session._check_deadline

        def check(self: Session, now: float) -> None:
            if self.connection_id == first:
                boom()
            real(self, now)

        monkeypatch.setattr(Session, "_check_deadline", check)
        assert good.eof() and b"421 4.4.2" in good.buf  # the sweeper still times out others
        assert bad.eof()
    assert wait_until(lambda: active(srv) == 0)
    assert len(errors()) == 1
    assert shutdown(srv) is True


def test_exception_after_the_tls_handshake(
    make_server: MakeServer,
    monkeypatch: pytest.MonkeyPatch,
    errors: Callable[[], list[logging.LogRecord]],
    tls_material: TLSMaterial,
) -> None:
    monkeypatch.setattr(_session, "tls_info", boom)
    srv = make_server(tls=tls_material.server_context(), max_clients=1)
    for _ in range(2):
        with connect(srv.port) as c:
            c.reply()
            c.cmd(b"EHLO client.test\r\n")
            assert c.cmd(b"STARTTLS\r\n").startswith(b"220")
            c.starttls(tls_material.client_context())
            assert c.eof()
    assert len(errors()) == 2
    assert "TLS upgrade" in errors()[0].getMessage()
    assert wait_until(lambda: active(srv) == 0)
    assert shutdown(srv) is True
