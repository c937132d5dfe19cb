"""TLS handshakes cut mid-way, and input that arrives with the end of a handshake (issue 10)."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
from collections.abc import Callable

import pytest

from tests.edges.edgeutil import TLSMaterial, connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
MSG = b"Subject: after a cut handshake\r\n\r\nbody\r\n"


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """A real ClientHello for ``ctx``, made in memory."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="mx.test")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def rst(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER on, zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records a cut handshake must not cause: errors, warnings, tracebacks."""
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.exc_info
    ]


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_half_a_client_hello_then_gone_frees_the_slot_quietly(
    make_server: MakeServer,
    tls_material: TLSMaterial,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    close: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    srv = make_server(
        tls=tls_material.server_context(), tls_always_on=mode == "implicit", timeout=30
    )
    hello = client_hello(tls_material.client_context())
    for cut in (1, 5, len(hello) // 2, len(hello) - 1):
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        if mode == "starttls":
            assert c.recv(1024).startswith(b"220 ")
            c.sendall(b"STARTTLS\r\n")
            assert c.recv(1024).startswith(b"220 ")
        c.sendall(hello[:cut])
        assert wait_until(lambda: active(srv) == 1)
        if close == "rst":
            rst(c)
        else:
            c.close()
        # The slot is freed by the close itself, long before the 30 s handshake timeout.
        assert wait_until(lambda: active(srv) == 0, 10), f"cut at {cut}"
    assert problems(caplog) == []
    # And the server still does TLS for the next client.
    if mode == "starttls":
        with srv.smtp() as client:
            client.starttls(context=tls_material.client_context())
            assert client.sendmail("a@b.example", ["r@x.example"], MSG) == {}
        assert srv.received[-1].tls is not None


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_command_in_the_same_segment_as_the_client_finished_is_answered(
    make_server: MakeServer, tls_material: TLSMaterial, version: str
) -> None:
    """Regression (found by bench/soak.py): EHLO sent together with the client's Finished.

    With TLS 1.3 the client may send its first command in the same TCP segment as the last
    handshake message (any client under load, or one that coalesces writes). The TLS layer
    delivered it before the handshake returned, and the session dropped it as "plaintext
    after STARTTLS": the client waited until the timeout and got 421 4.4.2.
    """
    srv = make_server(tls=tls_material.server_context(), timeout=3)
    ctx = tls_material.client_context()
    ctx.maximum_version = ctx.minimum_version = getattr(ssl.TLSVersion, version)
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert c.cmd(b"STARTTLS\r\n").startswith(b"220")
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_hostname="mx.test")
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := outgoing.read():
                    c.send(pending)
                incoming.write(c.sock.recv(65536))
        tls.write(b"EHLO client.test\r\n")
        c.send(outgoing.read())  # the Finished (TLS 1.3) and the EHLO in one segment
        reply = b""
        while not reply.endswith(b"\r\n") or reply.split(b"\r\n")[-2][3:4] == b"-":
            try:
                reply += tls.read(65536)
            except ssl.SSLWantReadError:
                data = c.sock.recv(65536)
                if not data:
                    break
                incoming.write(data)
    assert reply.startswith(b"250-mx.test"), reply
