"""Graceful shutdown: 421 between commands, DATA finishes, deadlines, restart, under load."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import smtplib
import threading
from collections.abc import Callable

import pytest

from smtpx import Envelope, Response, ServerState, new_response
from tests.edges.edgeutil import Conn, connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def shutdown_in_background(srv: ServerThread, timeout: float) -> concurrent.futures.Future[bool]:
    return asyncio.run_coroutine_threadsafe(srv.server.shutdown(timeout), srv.loop)


def test_sessions_between_commands_get_421(make_server: MakeServer) -> None:
    srv = make_server()
    port = srv.port
    fresh, greeted, in_txn = Conn(port), Conn(port), Conn(port)
    try:
        for c in (fresh, greeted, in_txn):
            assert c.reply().startswith(b"220")
        greeted.cmd(b"EHLO client.test\r\n")
        in_txn.cmd(b"EHLO client.test\r\n")
        assert in_txn.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
        assert srv.call(srv.server.shutdown(5)) is True
        for c in (fresh, greeted, in_txn):
            assert c.reply().startswith(b"421 4.3.0")
            assert c.eof()
    finally:
        for c in (fresh, greeted, in_txn):
            c.close()
    with pytest.raises(ConnectionRefusedError):
        Conn(port)
    assert srv.server.state is ServerState.STOPPED


def test_transaction_in_data_finishes_with_the_handlers_reply(make_server: MakeServer) -> None:
    async def handler(envelope: Envelope) -> Response:
        return new_response(250, "stored as 42", "2.0.0")

    srv = make_server(handler=handler)
    with connect(srv.port) as c:
        c.open_data()
        c.send(b"Subject: late\r\n\r\nfirst half ")
        done = shutdown_in_background(srv, 5)
        assert c.pending(0.3) == b""  # not interrupted
        c.send(b"second half\r\n.\r\n")
        assert c.reply() == b"250 2.0.0 stored as 42\r\n"
        assert c.reply().startswith(b"421 4.3.0")
        assert c.eof()
        assert done.result(10) is True


def test_message_in_the_handler_gets_its_reply(make_server: MakeServer) -> None:
    release = threading.Event()
    stored: list[bytes] = []

    def slow_handler(envelope: Envelope) -> None:  # a plain function: runs in a thread
        release.wait(10)
        stored.append(envelope.data)

    srv = make_server(handler=slow_handler)
    with srv.smtp() as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("r@x.example")
        client.putcmd("DATA")
        assert client.getreply()[0] == 354
        client.send(b"Subject: h\r\n\r\nbody\r\n.\r\n")
        assert wait_until(lambda: active(srv) == 1)
        done = shutdown_in_background(srv, 5)
        release.set()
        assert client.getreply()[0] == 250
        assert client.getreply()[0] == 421
    assert done.result(10) is True
    assert len(stored) == 1


def test_deadline_closes_the_rest(make_server: MakeServer) -> None:
    srv = make_server()
    with connect(srv.port) as c:
        c.open_data()
        c.send(b"Subject: never finished\r\n\r\n")
        assert srv.call(srv.server.shutdown(0.5)) is False  # the deadline was needed
        assert c.eof() and c.buf == b""  # dropped without a reply
    assert srv.received == []
    assert wait_until(lambda: active(srv) == 0)


def test_running_handler_at_the_deadline_still_answers(make_server: MakeServer) -> None:
    stored: list[str] = []

    async def slow(envelope: Envelope) -> None:
        await asyncio.sleep(1.0)
        stored.append(envelope.envelope_id)

    srv = make_server(handler=slow)
    with srv.smtp() as client:
        client.ehlo()
        client.mail("a@b.example")
        client.rcpt("r@x.example")
        client.putcmd("DATA")
        client.getreply()
        client.send(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        assert wait_until(lambda: active(srv) == 1)
        graceful = srv.call(srv.server.shutdown(0.2))
        # The handler accepted the message, so its client got the 250.
        assert client.getreply()[0] == 250
    assert graceful is False and len(stored) == 1


def test_start_and_serve_again_after_shutdown(make_server: MakeServer) -> None:
    srv = make_server()
    server = srv.server
    assert srv.call(server.shutdown(1)) is True
    assert srv.call(server.shutdown(1)) is True  # a second call is harmless
    # start() again: a new listening socket (port 0 picks a new port).
    srv.call(server.start())
    assert server.state is ServerState.RUNNING
    with srv.smtp() as client:
        assert client.sendmail("a@b.example", ["r@x.example"], b"Subject: 2\r\n\r\nx\r\n") == {}
    with pytest.raises(RuntimeError, match="already running"):
        srv.call(server.start())
    # serve() blocks until shutdown; shutting down makes it return cleanly.
    serving = asyncio.run_coroutine_threadsafe(server.serve(), srv.loop)
    assert srv.call(server.shutdown(1)) is True
    assert serving.result(5) is None
    # serve() after a shutdown starts over.
    serving = asyncio.run_coroutine_threadsafe(server.serve(), srv.loop)
    assert wait_until(lambda: server.state is ServerState.RUNNING)
    with srv.smtp() as client:
        assert client.noop()[0] == 250
    assert srv.call(server.shutdown(1)) is True
    assert serving.result(5) is None
    assert len(srv.received) == 1


def test_shutdown_under_load_loses_and_duplicates_nothing(make_server: MakeServer) -> None:
    stored: list[str] = []

    async def handler(envelope: Envelope) -> None:
        await asyncio.sleep(random.uniform(0, 0.02))  # some messages are mid-handler
        stored.append(envelope.data.split(b"\r\n", 1)[0].decode())

    srv = make_server(handler=handler, max_clients=100)
    host, port = srv.host, srv.port
    acked: list[str] = []
    outcome: dict[str, int] = {"421 4.3.0": 0, "refused": 0, "disconnected": 0, "other": 0}
    lock = threading.Lock()

    def note(kind: str) -> None:
        with lock:
            outcome[kind] += 1

    def client(i: int) -> None:
        n = 0
        while n < 400:
            try:
                s = smtplib.SMTP(host, port, local_hostname="c.test", timeout=15)
            except ConnectionRefusedError:
                note("refused")
                return
            except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, OSError):
                note("disconnected")
                return
            try:
                s.ehlo()
                for _ in range(5):
                    token = f"Subject: c{i}-{n}"
                    n += 1
                    # The 421 may answer MAIL or RCPT: both follow a point between commands.
                    code, text = s.mail("a@b.example")
                    if code == 250:
                        code, text = s.rcpt("r@x.example")
                    if code != 250:
                        note("421 4.3.0" if (code, text[:5]) == (421, b"4.3.0") else "other")
                        return
                    code, _ = s.data(f"{token}\r\n\r\nbody {n}\r\n".encode())
                    if code == 250:
                        with lock:
                            acked.append(token)
                s.quit()
            except smtplib.SMTPResponseException as exc:  # e.g. 421 to the DATA command
                note("421 4.3.0" if exc.smtp_code == 421 else "other")
                return
            except (smtplib.SMTPException, OSError):
                note("disconnected")
                return
            finally:
                s.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    assert wait_until(lambda: len(stored) >= 300, 20)
    graceful = srv.call(srv.server.shutdown(5))
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    # Every 250 matches exactly one stored message, and every stored message got its 250.
    assert len(stored) == len(set(stored))
    assert sorted(acked) == sorted(stored)
    assert sum(outcome.values()) == 50
    print(
        f"shutdown under load: 50 clients, {len(acked)} answered 250, {len(stored)} stored, "
        f"graceful={graceful}, client endings {outcome}"
    )
