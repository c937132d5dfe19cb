"""Timeouts (slowloris vs. slow uploads) and the connection limit, over real sockets."""

from __future__ import annotations

import contextlib
import logging
import random
import smtplib
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from tests.edges.edgeutil import Conn, TLSMaterial, connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def test_slowloris_is_cut_off(make_server: MakeServer) -> None:
    srv = make_server(timeout=2)
    with connect(srv.port) as c:
        assert c.reply().startswith(b"220")
        started = time.monotonic()
        answer = b""
        for byte in b"HELO " + b"a" * 60:  # one byte every half second, never a line end
            c.send(bytes([byte]))
            answer = c.pending(0.5)
            if answer:
                break
        elapsed = time.monotonic() - started
        assert answer.startswith(b"421 4.4.2"), answer
        assert c.eof()
        print(f"slowloris (1 byte / 0.5 s, timeout=2): 421 4.4.2 after {elapsed:.2f}s")
    assert wait_until(lambda: active(srv) == 0)


def test_idle_and_silent_data_time_out(make_server: MakeServer) -> None:
    srv = make_server(timeout=1)
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert c.reply().startswith(b"421 4.4.2")  # nothing sent: idle between commands
        assert c.eof()
    with connect(srv.port) as c:
        c.open_data()
        c.send(b"Subject: stalled\r\n\r\nhalf a message")
        assert c.reply().startswith(b"421 4.4.2")  # silence inside DATA
        assert c.eof()
    assert srv.received == []


def test_slow_but_steady_upload_is_not_cut_off(make_server: MakeServer) -> None:
    size, chunk = 10 * 1024 * 1024, 128 * 1024
    srv = make_server(timeout=1, max_size=16 * 1024 * 1024)
    with connect(srv.port) as c:
        c.open_data()
        c.send(b"Subject: big\r\n\r\n")
        line = b"x" * 1022 + b"\r\n"
        block = line * (chunk // len(line))
        started = time.monotonic()
        sent = 0
        while sent < size:
            c.send(block)
            sent += len(block)
            time.sleep(0.05)  # a steady trickle; every gap is far below the timeout
        reply = c.cmd(b".\r\n")
        elapsed = time.monotonic() - started
        assert reply.startswith(b"250"), reply
        print(f"slow upload: {sent / 1048576:.1f} MiB over {elapsed:.2f}s with timeout=1 -> 250")
    (env,) = srv.received
    assert len(env.data) == len(b"Subject: big\r\n\r\n") + sent


def test_client_that_never_reads_its_replies_loses_its_slot(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Replies pile up, the server stops reading, the timeout fires, and since the 421
    # cannot be delivered either, the connection is aborted rather than kept forever.
    caplog.set_level(logging.INFO, logger="smtpx")
    # RCPT may be pipelined (RFC 2920 3.1) and is neither junk nor an error while each one is
    # accepted, so only the reply pile-up can end this client.
    srv = make_server(timeout=1, max_recipients=10**9)
    with connect(srv.port) as c:
        assert c.reply().startswith(b"220")
        assert c.cmd(b"EHLO client.test\r\n").startswith(b"250")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.setblocking(False)
        c.sock.send(b"MAIL FROM:<a@b.example>\r\n")
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < 8 * 1024 * 1024:  # bounded: stops when our send buffer is full
                sent += c.sock.send(b"RCPT TO:<r@x.example>\r\n" * 512)
        assert wait_until(lambda: active(srv) == 0, 15)
    assert "timeout in state command" in caplog.text
    print(f"non-reading client: aborted after {sent / 1048576:.1f} MiB of pipelined RCPTs")


def test_max_clients(make_server: MakeServer) -> None:
    srv = make_server(max_clients=3)
    held = [Conn(srv.port) for _ in range(3)]
    try:
        for c in held:
            assert c.reply().startswith(b"220")
        assert active(srv) == 3
        with connect(srv.port) as extra:
            assert extra.reply().startswith(b"421 4.3.2")
            assert extra.eof()
        assert active(srv) == 3
        held.pop().close()
        assert wait_until(lambda: active(srv) == 2)
        with connect(srv.port) as again:
            assert again.reply().startswith(b"220")
            assert again.cmd(b"QUIT\r\n").startswith(b"221")
    finally:
        for c in held:
            c.close()
    assert wait_until(lambda: active(srv) == 0)


def test_max_clients_with_implicit_tls_closes_silently(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(max_clients=1, tls=tls_material.server_context(), tls_always_on=True)
    with connect(srv.port):
        assert wait_until(lambda: active(srv) == 1)
        with connect(srv.port) as extra:
            assert extra.eof() and extra.buf == b""  # no plaintext 421 into a TLS client


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_active_clients_is_exact_under_churn(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    limit = 12
    srv = make_server(max_clients=limit, timeout=5, tls=tls_material.server_context())
    counts = {"sent": 0, "refused": 0}
    lock = threading.Lock()
    samples: list[int] = []

    def one(rng: random.Random) -> None:
        kind = rng.randrange(6)
        try:
            if kind == 0:  # a whole message
                with smtplib.SMTP(srv.host, srv.port, timeout=10) as s:
                    s.sendmail("a@b.example", ["r@x.example"], b"Subject: c\r\n\r\nx\r\n")
                with lock:
                    counts["sent"] += 1
                return
            sock = socket.create_connection((srv.host, srv.port), timeout=10)
            greeting = sock.recv(100)
            if greeting.startswith(b"421 4.3.2"):
                with lock:
                    counts["refused"] += 1
                sock.close()
                return
            if kind == 1:
                sock.close()
            elif kind == 2:
                _rst(sock)
            elif kind == 3:  # leave in the middle of DATA
                sock.sendall(b"HELO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\npart")
                _rst(sock)
            elif kind == 4:  # leave in the middle of a TLS handshake
                sock.sendall(b"STARTTLS\r\n")
                sock.recv(100)
                sock.sendall(b"\x16\x03\x01\x00\xff\x01")
                sock.close()
            else:  # half-close after a command
                sock.sendall(b"NOOP\r\n")
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(100):
                    pass
                sock.close()
        except smtplib.SMTPConnectError as exc:
            if exc.smtp_code != 421:
                raise
            with lock:
                counts["refused"] += 1
        except smtplib.SMTPServerDisconnected:
            with lock:
                counts["refused"] += 1

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(30):
            one(rng)

    held = [Conn(srv.port) for _ in range(4)]
    for c in held:
        assert c.reply().startswith(b"220")
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append(active(srv))
        time.sleep(0.01)
    for t in threads:
        t.join()
    # Every churned connection is accounted for; only the held ones remain.
    assert wait_until(lambda: active(srv) == 4)
    assert max(samples) <= limit
    assert len(srv.received) == counts["sent"]
    for c in held:
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
        c.close()
    assert wait_until(lambda: active(srv) == 0)
    print(
        f"churn: 300 connections, {counts['sent']} messages, {counts['refused']} refused "
        f"with 421 4.3.2, peak active {max(samples)} (limit {limit})"
    )
