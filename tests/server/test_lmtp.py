"""LMTP (RFC 2033) over TCP and over a Unix socket, and the Unix socket's rules."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpx import Envelope, PerRecipient, Response, Server
from smtpx import responses as R
from smtpx.middleware import add_received_header
from tests.server.serverthread import RawClient, ServerThread
from tests.server.unixserver import UnixServer

MakeServer = Callable[..., ServerThread]


async def three_ways(envelope: Envelope) -> Response | None:
    # a@ accepted, b@ refused for good, c@ deferred.
    by_local = {"a": None, "b": R.FAIL_RCPT_CMD, "c": R.ERROR_HANDLER}
    return PerRecipient(by_local[r.address.split("@")[0]] for r in envelope.rcpt_to)


TRANSACTION = (
    b"MAIL FROM:<s@x.y>\r\nRCPT TO:<a@x.y>\r\nRCPT TO:<b@x.y>\r\nRCPT TO:<c@x.y>\r\nDATA\r\n"
)


class UnixRaw(RawClient):
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")


def conversation(c: RawClient) -> None:
    assert c.reply().startswith(b"220 ")
    assert c.cmd(b"HELO c.test\r\n").startswith(b"500 5.5.1")
    assert c.cmd(b"EHLO c.test\r\n").startswith(b"500 5.5.1")
    lhlo = c.cmd(b"LHLO c.test\r\n")
    assert lhlo.startswith(b"250-mx.test") and b"250-PIPELINING" in lhlo
    c.send(TRANSACTION)
    assert [c.reply()[:3] for _ in range(5)] == [b"250", b"250", b"250", b"250", b"354"]
    c.send(b"Subject: t\r\n\r\nhi\r\n.\r\n")
    assert [c.reply()[:9] for _ in range(3)] == [b"250 2.0.0", b"550 5.1.1", b"451 4.3.0"]
    assert c.cmd(b"QUIT\r\n").startswith(b"221")


def test_lmtp_over_tcp(make_server: MakeServer) -> None:
    srv = make_server(lmtp=True, handler=three_ways, middlewares=[add_received_header()])
    with srv.raw() as c:
        conversation(c)
    (env,) = srv.wait_for_envelopes(1)
    assert env.lmtp
    assert b" with LMTP id " in env.data  # RFC 3848


def test_lmtp_over_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "lmtp.sock")
    with UnixServer(
        path, lmtp=True, handler=three_ways, middlewares=[add_received_header()]
    ) as srv:
        c = UnixRaw(path)
        try:
            conversation(c)
        finally:
            c.close()
        (env,) = srv.received
        # No "([])": a Unix-socket client has no address to show (RFC 5321 4.4 TCP-info).
        assert env.data.startswith(b"Received: from c.test\r\n\tby mx.test with LMTP id ")
    assert not os.path.exists(path)  # removed at shutdown


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"x" * 200 + b"\r\n.\r\n", b"552 5.3.4"),
        (b"bare\nLF\r\n.\r\n", b"550 5.5.2"),
        (b"a\0b\r\n.\r\n", b"550 5.6.0"),
    ],
)
def test_lmtp_refused_whole_message_gets_a_reply_per_recipient(
    make_server: MakeServer, message: bytes, code: bytes
) -> None:
    srv = make_server(lmtp=True, max_size=100)
    with srv.raw() as c:
        assert c.reply().startswith(b"220")
        c.cmd(b"LHLO c.test\r\n")
        c.send(TRANSACTION)
        [c.reply() for _ in range(5)]
        c.send(message)
        assert [c.reply()[:9] for _ in range(3)] == [code] * 3
        assert c.cmd(b"NOOP\r\n").startswith(b"250")  # still in step


def test_lmtp_handler_error_gets_a_reply_per_recipient(make_server: MakeServer) -> None:
    async def broken(envelope: Envelope) -> Response | None:
        raise RuntimeError("boom")

    async def miscounted(envelope: Envelope) -> Response | None:
        return PerRecipient([None])  # one reply for three recipients

    for handler in (broken, miscounted):
        srv = make_server(lmtp=True, handler=handler)
        with srv.raw() as c:
            assert c.reply().startswith(b"220")
            c.cmd(b"LHLO c.test\r\n")
            c.send(TRANSACTION)
            [c.reply() for _ in range(5)]
            c.send(b"hi\r\n.\r\n")
            assert [c.reply()[:9] for _ in range(3)] == [b"451 4.3.0"] * 3
            assert c.cmd(b"NOOP\r\n").startswith(b"250")


def test_per_recipient_over_smtp_collapses() -> None:
    assert PerRecipient([None, None]).code == 250
    assert PerRecipient([R.FAIL_RCPT_CMD, R.FAIL_MAIL_CMD]).code == 550
    assert PerRecipient([None, R.FAIL_RCPT_CMD]).code == 451  # SMTP cannot say "some"
    assert PerRecipient([None, R.FAIL_RCPT_CMD], smtp=R.SUCCESS_MESSAGE_ACCEPTED).code == 250
    with pytest.raises(ValueError, match="at least one"):
        PerRecipient([])


# ------------------------------------------------------------------- the Unix socket itself
@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize(("mode", "mask"), [(0o660, 0o000), (0o660, 0o077), (0o600, 0o000)])
def test_socket_mode_is_set_whatever_the_umask(tmp_path: Path, mode: int, mask: int) -> None:
    path = str(tmp_path / "s.sock")
    with umask(mask), UnixServer(path, unix_mode=mode):
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == mode


def test_default_mode_is_0660(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with umask(0), UnixServer(path):
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    with UnixServer(path) as srv:
        sock = srv.connect()
        assert sock.recv(100).startswith(b"220 ")
        sock.close()


def _live(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock


@pytest.mark.parametrize("kind", ["file", "directory", "live socket", "symlink", "dangling"])
def test_anything_but_a_stale_socket_is_a_startup_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "s.sock"
    target = tmp_path / "target"
    live = None
    if kind == "file":
        path.write_text("keep me")
    elif kind == "directory":
        path.mkdir()
    elif kind == "live socket":
        live = _live(str(path))
    elif kind == "symlink":
        target.write_text("keep me")
        path.symlink_to(target)
    else:
        path.symlink_to(target)
    before = os.lstat(path)
    try:
        with pytest.raises(OSError):  # noqa: PT012 (start is the call under test)
            srv = UnixServer(str(path))
            srv.start()
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)  # untouched
        if kind == "symlink":
            assert target.read_text() == "keep me"  # not followed
        if kind == "dangling":
            assert not target.exists()  # nothing created through it
        if live is not None:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.connect(str(path))  # the other server still listens there
            probe.close()
    finally:
        if live is not None:
            live.close()


def test_startup_errors_and_options() -> None:
    with pytest.raises(ValueError, match="workers"):
        Server(addr="unix:/tmp/x.sock", workers=2)
    with pytest.raises(ValueError, match="path"):
        Server(addr="unix:")
    with pytest.raises(ValueError, match="unix_mode"):
        Server(addr="unix:/tmp/x.sock", unix_mode=0o4777)


def test_chain_and_middleware_pass_per_recipient_through() -> None:
    # chain()'s return check (HandlerReturnError) accepts it: a PerRecipient is a Response.
    import asyncio  # noqa: PLC0415 (only this test)

    from smtpx.address import Address  # noqa: PLC0415
    from smtpx.handler import chain, new_handler  # noqa: PLC0415

    def sync_handler(envelope: Envelope) -> Response | None:
        return PerRecipient([None, R.FAIL_RCPT_CMD])

    func = chain(new_handler(sync_handler), [add_received_header()])
    envelope = Envelope(mail_from=Address("s@x.y"), rcpt_to=[Address("a@x.y"), Address("b@x.y")])

    async def call() -> Response | None:
        return await func(envelope)

    response = asyncio.run(call())
    assert isinstance(response, PerRecipient)
    assert [r.code for r in response.replies] == [250, 550]
