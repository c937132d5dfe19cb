"""PROXY protocol over real sockets: header before the greeting, trust, limits, TLS."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable

from smtpx.middleware import add_received_header
from tests.edges.edgeutil import Conn, TLSMaterial, connect, wait_until
from tests.edges.test_proxy_parser import tlv, v2
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\r\n"


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def send_mail(c: Conn, greeting_seen: bool = False) -> None:
    if not greeting_seen:
        assert c.reply().startswith(b"220 mx.test")
    assert c.cmd(b"EHLO client.test\r\n").startswith(b"250")
    assert c.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
    assert c.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"250")
    assert c.cmd(b"DATA\r\n").startswith(b"354")
    assert c.cmd(b"Subject: p\r\n\r\nbody\r\n.\r\n").startswith(b"250")
    assert c.cmd(b"QUIT\r\n").startswith(b"221")


def test_v1_address_reaches_envelope_and_received(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True, middlewares=[add_received_header()])
    with connect(srv.port) as c:
        c.send(V1)
        send_mail(c)
    (env,) = srv.received
    assert env.remote_addr == ("192.0.2.7", 4242)
    assert env.local_addr == ("198.51.100.1", 25)
    assert env.data.startswith(b"Received: from client.test ([192.0.2.7])")
    assert env.values["proxy"].version == 1


def test_header_and_commands_in_one_write(make_server: MakeServer) -> None:
    # Bytes after the header stay for the SMTP layer; they are answered after the greeting.
    # (One command only: EHLO ends a pipelining group, RFC 2920 3.1, so a NOOP sent with it
    # would be improper pipelining and end the session.)
    srv = make_server(proxy_on=True)
    with connect(srv.port) as c:
        c.send(V1 + b"EHLO client.test\r\n")
        assert c.reply().startswith(b"220 mx.test")
        assert c.reply().startswith(b"250-mx.test")
        assert c.cmd(b"NOOP\r\n").startswith(b"250 2.0.0")


def test_v2_ipv6_with_tlvs(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True, middlewares=[add_received_header()])
    header = v2(
        fam=0x21,
        src="2001:db8::7",
        dst="2001:db8::25",
        sport=50000,
        tlvs=tlv(0x02, b"mx.example") + tlv(0x05, b"req-1"),
    )
    with connect(srv.port) as c:
        c.send(header)
        send_mail(c)
    (env,) = srv.received
    assert env.remote_addr == ("2001:db8::7", 50000)
    assert env.data.startswith(b"Received: from client.test ([IPv6:2001:db8::7])")
    assert env.values["proxy"].tlvs == ((2, b"mx.example"), (5, b"req-1"))


def test_v2_local_keeps_the_real_peer(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True)
    with connect(srv.port) as c:
        c.send(v2(ver_cmd=0x20, fam=0x00))
        send_mail(c)
    (env,) = srv.received
    assert env.remote_addr[0] == "127.0.0.1"


def closed_without_greeting(port: int, data: bytes, half_close: bool = False) -> bool:
    with connect(port) as c:
        if data:
            c.send(data)
        if half_close:
            c.sock.shutdown(socket.SHUT_WR)
        return c.eof() and c.buf == b""


def test_malformed_missing_and_oversized_headers_close_without_greeting(
    make_server: MakeServer,
) -> None:
    srv = make_server(proxy_on=True)
    bad = [
        b"EHLO client.test\r\n",  # missing header: the client speaks SMTP first
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 25\n",
        b"PROXY UNKNOWN " + b"9" * 200,  # oversized, no line end
        v2(ver_cmd=0x22),
        v2(fam=0x12),
        v2(tlvs=b"\x01\x00\x09abc"),
    ]
    for data in bad:
        assert closed_without_greeting(srv.port, data), data
    # Headers cut short, then the client half-closes.
    assert closed_without_greeting(srv.port, v2()[:20], half_close=True)
    assert closed_without_greeting(srv.port, V1[:-2], half_close=True)
    # A client that closes before sending anything.
    socket.create_connection((srv.host, srv.port)).close()
    assert wait_until(lambda: active(srv) == 0)
    assert srv.received == []
    # The server is still fine.
    with connect(srv.port) as c:
        c.send(V1)
        send_mail(c)


def test_v1_zone_id_is_refused_without_greeting(make_server: MakeServer) -> None:
    # Issue 9 item 11: a zone id would reach the Received line; a CR in it broke every message.
    srv = make_server(proxy_on=True, middlewares=[add_received_header()])
    for zone in (b"%eth0", b"%\rX-Forged:1", b"%x])by_evil"):
        header = b"PROXY TCP6 fe80::1" + zone + b" 2001:db8::1 4242 25\r\n"
        assert closed_without_greeting(srv.port, header), header
    assert srv.received == []
    with connect(srv.port) as c:
        c.send(b"PROXY TCP6 fe80::1 2001:db8::1 4242 25\r\n")
        send_mail(c)
    assert srv.received[0].data.startswith(b"Received: from client.test ([IPv6:fe80::1])")


def test_untrusted_peer_is_closed_without_greeting(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True, proxy_trusted=["10.0.0.0/8", "fd00::/8"])
    assert closed_without_greeting(srv.port, V1)
    assert closed_without_greeting(srv.port, b"")


def test_slow_header_is_cut_off(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True, timeout=1)
    with connect(srv.port) as c:
        started = time.monotonic()
        for byte in V1[:-2]:  # one byte every 0.2 s: never completes within 1 s
            try:
                c.send(bytes([byte]))
            except OSError:
                break
            if c.pending(0.2):
                break
        else:
            raise AssertionError("a slow PROXY header was never cut off")
        assert c.eof() and c.buf == b""
        print(f"slow PROXY header cut off after {time.monotonic() - started:.2f}s")
    # A client that sends nothing at all is dropped too.
    assert closed_without_greeting(srv.port, b"")
    assert wait_until(lambda: active(srv) == 0)


def test_proxy_line_without_proxy_on_is_an_unknown_command(make_server: MakeServer) -> None:
    srv = make_server()
    with connect(srv.port) as c:
        c.reply()
        assert c.cmd(V1).startswith(b"500 5.5.1")


def test_second_proxy_header_is_just_a_command(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True)
    with connect(srv.port) as c:
        c.send(V1)
        c.reply()
        assert c.cmd(b"PROXY TCP4 203.0.113.9 198.51.100.1 1 25\r\n").startswith(b"500")
        send_mail(c, greeting_seen=True)
    assert srv.received[0].remote_addr == ("192.0.2.7", 4242)


def test_identity_survives_starttls(make_server: MakeServer, tls_material: TLSMaterial) -> None:
    srv = make_server(proxy_on=True, tls=tls_material.server_context())
    with connect(srv.port) as c:
        c.send(V1)
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert c.cmd(b"STARTTLS\r\n").startswith(b"220")
        c.starttls(tls_material.client_context())
        send_mail(c, greeting_seen=True)
    (env,) = srv.received
    assert env.tls is not None and env.remote_addr == ("192.0.2.7", 4242)


class BioClient:
    """TLS over a socket through memory BIOs, so the first flight can share a write."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext) -> None:
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.inc, self.out, server_hostname="mx.test")

    def client_hello(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.out.read()

    def _pump(self) -> None:
        if self.out.pending:
            self.sock.sendall(self.out.read())
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.inc.write(data)

    def finish_handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._pump()
        if self.out.pending:
            self.sock.sendall(self.out.read())

    def reply(self) -> bytes:
        buf = b""
        while not buf.endswith(b"\r\n"):
            try:
                buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._pump()
        return buf

    def cmd(self, line: bytes) -> bytes:
        self.tls.write(line)
        self.sock.sendall(self.out.read())
        return self.reply()


def test_v2_header_and_client_hello_in_one_segment(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    # Implicit TLS behind a proxy: the ClientHello may arrive together with the header and
    # must reach the TLS layer intact.
    srv = make_server(
        proxy_on=True,
        tls=tls_material.server_context(),
        tls_always_on=True,
        middlewares=[add_received_header()],
    )
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        client = BioClient(sock, tls_material.client_context())
        sock.sendall(v2() + client.client_hello())
        client.finish_handshake()
        assert client.reply().startswith(b"220 mx.test")
        assert client.cmd(b"EHLO client.test\r\n").startswith(b"250")
        assert client.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
        assert client.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"250")
        assert client.cmd(b"DATA\r\n").startswith(b"354")
        assert client.cmd(b"Subject: p\r\n\r\nbody\r\n.\r\n").startswith(b"250")
    (env,) = srv.received
    assert env.remote_addr == ("192.0.2.7", 4242)
    assert env.tls is not None
    assert b"from client.test ([192.0.2.7])" in env.data and b" with ESMTPS " in env.data
