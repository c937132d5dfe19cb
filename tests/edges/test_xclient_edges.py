"""XCLIENT (Postfix XCLIENT_README): raw sessions and nginx's mail proxy with ``xclient on``."""

from __future__ import annotations

import http.server
import shutil
import smtplib
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpx.middleware import add_received_header
from tests.edges.edgeutil import Conn, TLSMaterial, connect, free_port, stop_process, wait_for_port
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


def mail_after_greeting(c: Conn) -> bytes:
    assert c.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
    assert c.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"250")
    assert c.cmd(b"DATA\r\n").startswith(b"354")
    return c.cmd(b"Subject: x\r\n\r\nbody\r\n.\r\n")


def test_xclient_sets_identity_with_fresh_greeting(make_server: MakeServer) -> None:
    srv = make_server(xclient_on=True, middlewares=[add_received_header()])
    with connect(srv.port) as c:
        c.reply()
        ehlo = c.cmd(b"EHLO proxy.test\r\n")
        assert b"250-XCLIENT " in ehlo or b"250 XCLIENT " in ehlo
        reply = c.cmd(
            b"XCLIENT ADDR=IPV6:2001:DB8::7 PORT=4711 NAME=client+2Eexample "
            b"HELO=laptop.example PROTO=ESMTP LOGIN=[UNAVAILABLE]\r\n"
        )
        assert reply.startswith(b"220 mx.test")  # a fresh greeting, as Postfix does
        assert mail_after_greeting(c).startswith(b"250")
    (env,) = srv.received
    assert env.remote_addr == ("2001:db8::7", 4711)
    assert env.helo == "laptop.example" and env.esmtp
    assert env.values["xclient"]["NAME"] == "client.example"
    assert env.values["xclient"]["LOGIN"] is None
    assert env.data.startswith(b"Received: from laptop.example ([IPv6:2001:db8::7])")


def test_xclient_rules(make_server: MakeServer) -> None:
    srv = make_server(xclient_on=True)
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO proxy.test\r\n")
        for bad in (
            b"XCLIENT ADDR=not-an-ip\r\n",
            b"XCLIENT ADDR=999.1.1.1\r\n",
            b"XCLIENT ADDR=IPV6:zz::1\r\n",
            b"XCLIENT PORT=http\r\n",
            b"XCLIENT PORT=65536\r\n",
            b"XCLIENT HELO=a+0Db\r\n",  # xtext for a bare CR: header injection
            b"XCLIENT ADDR=[TEMPUNAVAIL]\r\n",  # only NAME may be TEMPUNAVAIL
            b"XCLIENT FOO=bar\r\n",
            b"XCLIENT ADDR=1.2.3.4+zz\r\n",  # broken xtext
        ):
            assert c.cmd(bad).startswith(b"501"), bad
        assert c.cmd(b"XCLIENT NAME=[TEMPUNAVAIL] ADDR=192.0.2.1\r\n").startswith(b"220")
        c.cmd(b"EHLO proxy.test\r\n")
        assert c.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"250")
        # Not inside a transaction.
        assert c.cmd(b"XCLIENT ADDR=192.0.2.2\r\n").startswith(b"503")


def test_xclient_untrusted_and_disabled(make_server: MakeServer) -> None:
    untrusted = make_server(xclient_on=True, xclient_trusted=["10.0.0.0/8"])
    with connect(untrusted.port) as c:
        c.reply()
        assert b"XCLIENT" not in c.cmd(b"EHLO proxy.test\r\n")
        assert c.cmd(b"XCLIENT ADDR=192.0.2.1\r\n").startswith(b"550 5.7.0")
    disabled = make_server()
    with connect(disabled.port) as c:
        c.reply()
        assert c.cmd(b"XCLIENT ADDR=192.0.2.1\r\n").startswith(b"500")


def test_xclient_identity_survives_starttls(
    make_server: MakeServer, tls_material: TLSMaterial
) -> None:
    srv = make_server(xclient_on=True, tls=tls_material.server_context())
    with connect(srv.port) as c:
        c.reply()
        assert c.cmd(b"XCLIENT ADDR=192.0.2.9 PORT=1234\r\n").startswith(b"220")
        c.cmd(b"EHLO client.test\r\n")
        assert c.cmd(b"STARTTLS\r\n").startswith(b"220")
        c.starttls(tls_material.client_context())
        c.cmd(b"EHLO client.test\r\n")
        assert mail_after_greeting(c).startswith(b"250")
    (env,) = srv.received
    assert env.remote_addr == ("192.0.2.9", 1234) and env.tls is not None


# ------------------------------------------------------------------- nginx mail proxy
class AuthHTTP(http.server.ThreadingHTTPServer):
    """nginx's auth_http: always OK, pointing at the smtpx port; remembers what it heard."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.requests: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), AuthHandler)


class AuthHandler(http.server.BaseHTTPRequestHandler):
    server: AuthHTTP

    def do_GET(self) -> None:
        self.server.requests.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", str(self.server.backend_port))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


NGINX_CONF = """
load_module {module};
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
mail {{
    server_name mx-proxy.test;
    auth_http 127.0.0.1:{auth_port}/auth;
    xclient on;
    smtp_auth none;
    proxy_pass_error_message on;
    server {{
        listen 127.0.0.1:{port};
        protocol smtp;
    }}
}}
"""


@pytest.fixture
def nginx_mail(tmp_path: Path) -> Iterator[Callable[[int], tuple[int, AuthHTTP]]]:
    assert Path(NGINX).exists() and Path(MAIL_MODULE).exists(), "nginx mail module missing"
    started: list[tuple[subprocess.Popen[bytes], AuthHTTP]] = []

    def start(backend_port: int) -> tuple[int, AuthHTTP]:
        auth = AuthHTTP(backend_port)
        threading.Thread(target=auth.serve_forever, daemon=True).start()
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                module=MAIL_MODULE, dir=tmp_path, auth_port=auth.server_address[1], port=port
            )
        )
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "startup.log"), "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        started.append((proc, auth))
        wait_for_port(port)
        return port, auth

    yield start
    for proc, auth in started:
        stop_process(proc)
        auth.shutdown()
        auth.server_close()


def test_nginx_mail_proxy_passes_the_client_with_xclient(
    make_server: MakeServer, nginx_mail: Callable[[int], tuple[int, AuthHTTP]]
) -> None:
    srv = make_server(xclient_on=True, middlewares=[add_received_header()])
    port, auth = nginx_mail(srv.port)
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="client.test", source_address=("127.0.0.2", 0)
    ) as client:
        assert client.sendmail("a@b.example", ["r@x.example"], b"Subject: n\r\n\r\nhi\r\n") == {}
    (env,) = srv.received
    # nginx connected from 127.0.0.1 and told us, with XCLIENT, who its client was.
    assert env.remote_addr[0] == "127.0.0.2"
    assert env.helo == "client.test"
    assert env.values["xclient"]["ADDR"] == "127.0.0.2"
    assert env.data.startswith(b"Received: from client.test ([127.0.0.2])")
    assert env.mail_from is not None and env.mail_from.address == "a@b.example"
    assert auth.requests and auth.requests[0]["Client-IP"] == "127.0.0.2"
