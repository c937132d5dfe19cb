"""One client must not hold every slot (issue 9 item 10): per-address limit, session lifetime.

Loopback is one /8, so distinct "clients" are distinct source addresses in 127.0.0.0/8.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from smtpx import Server
from smtpx.cli import build_parser, build_server
from tests.edges.edgeutil import connect, wait_until
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


def active(srv: ServerThread) -> int:
    async def count() -> int:
        return srv.server.active_clients

    return int(srv.call(count()))


def test_one_address_cannot_take_every_slot(make_server: MakeServer) -> None:
    # The attack from the issue: one client opens max_clients sessions and keeps them busy.
    srv = make_server(max_clients=10, max_clients_per_ip_exempt=())
    assert srv.server.max_clients_per_ip == 5  # default: half of max_clients, as anvil
    with ExitStack() as stack:
        hog = [stack.enter_context(connect(srv.port, source="127.0.0.2")) for _ in range(10)]
        replies = [c.reply() for c in hog]
        assert sum(r.startswith(b"220 ") for r in replies) == 5
        refused = [c for c, r in zip(hog, replies, strict=True) if r.startswith(b"421 4.7.0")]
        assert len(refused) == 5 and all(c.eof() for c in refused)
        for c in hog:
            if c not in refused:
                assert c.cmd(b"NOOP\r\n").startswith(b"250")
        # Someone else still gets in.
        with connect(srv.port, source="127.0.0.3") as other:
            assert other.reply().startswith(b"220 ")
            assert other.cmd(b"QUIT\r\n").startswith(b"221")
        assert wait_until(lambda: active(srv) == 5)
        # A slot of the hog's own frees when one of its sessions ends.
        greeted = [c for c in hog if c not in refused]
        assert greeted[0].cmd(b"QUIT\r\n").startswith(b"221")
        assert wait_until(lambda: active(srv) == 4)
        with connect(srv.port, source="127.0.0.2") as again:
            assert again.reply().startswith(b"220 ")


def test_loopback_is_exempt_by_default(make_server: MakeServer) -> None:
    srv = make_server(max_clients=4)
    assert srv.server.max_clients_per_ip == 2
    with ExitStack() as stack:
        conns = [stack.enter_context(connect(srv.port)) for _ in range(4)]
        assert all(c.reply().startswith(b"220 ") for c in conns)


def test_limit_counts_the_proxy_client_not_the_proxy(make_server: MakeServer) -> None:
    srv = make_server(proxy_on=True, max_clients_per_ip=1)
    header = b"PROXY TCP4 192.0.2.7 198.51.100.1 %d 25\r\n"
    with connect(srv.port) as first, connect(srv.port) as second, connect(srv.port) as third:
        first.send(header % 1000)
        assert first.reply().startswith(b"220 ")
        second.send(header % 1001)
        assert second.reply().startswith(b"421 4.7.0") and second.eof()
        third.send(b"PROXY TCP4 192.0.2.8 198.51.100.1 1002 25\r\n")
        assert third.reply().startswith(b"220 ")


def test_limit_counts_the_xclient_address(make_server: MakeServer) -> None:
    srv = make_server(xclient_on=True, max_clients_per_ip=1)
    with connect(srv.port) as first, connect(srv.port) as second:
        for c in (first, second):
            c.reply()
            c.cmd(b"EHLO proxy.test\r\n")
        assert first.cmd(b"XCLIENT ADDR=192.0.2.7\r\n").startswith(b"220 ")
        assert second.cmd(b"XCLIENT ADDR=192.0.2.7\r\n").startswith(b"220 ")
        assert second.reply().startswith(b"421 4.7.0") and second.eof()
        assert first.cmd(b"NOOP\r\n").startswith(b"250")


def test_ipv6_clients_count_by_their_64() -> None:
    srv = Server(max_clients=10, max_clients_per_ip_exempt=())
    assert srv._ip_key("2001:db8:1:2::1") == srv._ip_key("2001:db8:1:2:ffff::9")
    assert srv._ip_key("2001:db8:1:2::1") != srv._ip_key("2001:db8:1:3::1")
    assert srv._ip_key("::ffff:192.0.2.7") == srv._ip_key("192.0.2.7") == "192.0.2.7"
    assert Server()._ip_key("127.0.0.1") is None and Server()._ip_key("::1") is None


def test_session_time_limit_closes_an_idle_client(make_server: MakeServer) -> None:
    srv = make_server(max_session_time=0.5, timeout=30)
    with connect(srv.port) as c:
        assert c.reply().startswith(b"220 ")
        assert c.reply().startswith(b"421 4.4.2 Session time limit")
        assert c.eof()
    assert wait_until(lambda: active(srv) == 0)


def test_session_time_limit_waits_for_the_next_command_boundary(make_server: MakeServer) -> None:
    srv = make_server(max_session_time=0.5, timeout=30)
    with connect(srv.port) as c:
        c.open_data()
        c.send(b"Subject: slow\r\n\r\n")
        time.sleep(1.0)  # the limit passes in the middle of DATA
        assert c.pending(0.1) == b""
        assert c.cmd(b"body\r\n.\r\n").startswith(b"250 ")  # the message still goes through
        assert c.reply().startswith(b"421 4.4.2 Session time limit")
        assert c.eof()
    assert len(srv.received) == 1


def test_session_time_limit_ends_a_client_that_never_reaches_a_boundary(
    make_server: MakeServer,
) -> None:
    # A trickle in DATA resets the timeout (it bounds silence), so only the lifetime ends it.
    srv = make_server(max_session_time=0.5, timeout=1.0)
    with connect(srv.port) as c:
        c.open_data()
        end = time.monotonic() + 6
        closed = b""
        while time.monotonic() < end and not closed:
            try:
                c.send(b"x")
            except OSError:
                break
            closed = c.pending(0.1)
        assert closed.startswith(b"421 4.4.2 Session time limit"), closed
        assert c.eof()
    assert wait_until(lambda: active(srv) == 0)
    assert srv.received == []


def test_session_time_limit_off_by_default(make_server: MakeServer) -> None:
    srv = make_server(timeout=30)
    assert srv.server.max_session_time == 0
    with connect(srv.port) as c:
        c.reply()
        assert c.pending(1.0) == b""


def test_cli_flags(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    md = str(tmp_path / "md")
    server = build_server(
        parse(["serve", "--maildir", md, "--max-clients-per-ip", "3", "--max-session-time", "60"])
    )
    assert server.max_clients_per_ip == 3 and server.max_session_time == 60
    server = build_server(parse(["serve", "--maildir", md, "--max-clients", "10"]))
    assert server.max_clients_per_ip == 5 and server.max_session_time == 0


def test_junk_and_error_limits_are_server_options_and_cli_flags(
    make_server: MakeServer, tmp_path: Path
) -> None:
    # Issue 9 item 10: the core's limits (ProtocolConfig.max_junk_commands, max_errors).
    srv = make_server(max_junk_commands=3, max_errors=2)
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert [c.cmd(b"NOOP\r\n")[:3] for _ in range(3)] == [b"250"] * 3
        assert c.cmd(b"NOOP\r\n").startswith(b"421 4.7.0") and c.eof()
    with connect(srv.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        assert [c.cmd(b"RCPT TO:<r@x.example>\r\n")[:3] for _ in range(2)] == [b"503"] * 2
        assert c.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"421 4.7.0") and c.eof()
    parse = build_parser().parse_args
    md = str(tmp_path / "md")
    server = build_server(
        parse(["serve", "--maildir", md, "--junk-command-limit", "7", "--hard-error-limit", "0"])
    )
    assert server._protocol_config.max_junk_commands == 7
    assert server._protocol_config.max_errors == 0
    server = build_server(parse(["serve", "--maildir", md]))
    assert (server.max_junk_commands, server.max_errors) == (100, 20)


def test_pipelining_and_nul_policies_are_server_options(make_server: MakeServer) -> None:
    # Issue 9 items 13 and 15 reach users as Server options: on by default, and can be relaxed.
    message = b"DATA\r\nSubject: x\r\n\r\nhello\x00world\r\n.\r\n"
    strict = make_server()
    with connect(strict.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        c.cmd(b"MAIL FROM:<a@x.example>\r\n")
        c.cmd(b"RCPT TO:<b@x.example>\r\n")
        # The 354 was already owed; the message that followed it is refused and the client cut.
        assert c.cmd(message).startswith(b"354")
        assert c.reply().startswith(b"554 5.5.0") and c.eof()
    assert strict.received == []
    relaxed = make_server(forbid_unauth_pipelining=False, allow_nul=True)
    with connect(relaxed.port) as c:
        c.reply()
        c.cmd(b"EHLO client.test\r\n")
        c.cmd(b"MAIL FROM:<a@x.example>\r\n")
        c.cmd(b"RCPT TO:<b@x.example>\r\n")
        assert c.cmd(message).startswith(b"354")
        assert c.reply().startswith(b"250")
    assert wait_until(lambda: len(relaxed.received) == 1)
    assert b"hello\x00world" in relaxed.received[0].data
