"""smtpx forwards to Dovecot's LMTP server (Debian dovecot-lmtpd), over TCP and a Unix socket.

The Dovecot instance runs ``examples/dovecot-lmtp.conf`` as ``nobody``. Each message the
client saw accepted must be in the recipient's Maildir exactly once; none it saw refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from smtpx.forward import Forward
from tests.forward.dovecot import PrivateDovecot
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def dovecot() -> Iterator[PrivateDovecot]:
    instance = PrivateDovecot(["u@example.org", "v@example.org"], broken=["broken@example.org"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def url(dovecot: PrivateDovecot, transport: str) -> str:
    if transport == "inet":
        return f"lmtp://127.0.0.1:{dovecot.port}"
    return f"lmtp+unix://{dovecot.socket}"


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\nFrom: a@c.test\r\n\r\nbody\r\n..two dots\r\n.\r\n".encode()


@pytest.mark.parametrize("transport", ["inet", "unix"])
def test_lmtp_front_per_recipient_through_dovecot(
    make_server: MakeServer, dovecot: PrivateDovecot, transport: str
) -> None:
    srv = make_server(handler=Forward(url(dovecot, transport), timeout=20), lmtp=True)
    with srv.raw() as c:
        c.reply()
        assert c.cmd(b"LHLO c.test\r\n").startswith(b"250")
        for round_ in ("one", "two"):
            assert c.cmd(b"MAIL FROM:<a@c.test>\r\n").startswith(b"250")
            assert c.cmd(b"RCPT TO:<u@example.org>\r\n").startswith(b"250")
            # Unknown to Dovecot: refused at RCPT time with Dovecot's own reply.
            assert c.cmd(b"RCPT TO:<ghost@example.org>\r\n").startswith(b"550 5.1.1")
            assert c.cmd(b"RCPT TO:<broken@example.org>\r\n").startswith(b"250")
            assert c.cmd(b"RCPT TO:<v@example.org>\r\n").startswith(b"250")
            assert c.cmd(b"DATA\r\n").startswith(b"354")
            c.send(message(round_))
            replies = [c.reply() for _ in range(3)]
            assert replies[0].startswith(b"250 2.0.0 <u@example.org>")
            assert replies[1].startswith(b"451 4.2.0 <broken@example.org>")
            assert replies[2].startswith(b"250 2.0.0 <v@example.org>")
    for user in ("u@example.org", "v@example.org"):
        got = dovecot.delivered(user)
        assert len(got) == 2, dovecot.log_text()
        # Each round exactly once. Not by position: Dovecot's Maildir names carry unpadded
        # microseconds (".M5P" sorts after ".M123456P"), so a name sort is not delivery order.
        assert [sum(f"Subject: {r}".encode() in m for m in got) for r in ("one", "two")] == [1, 1]
        assert all(b"\r\n.two dots\r\n" in m or b"\n.two dots\n" in m for m in got)
    assert dovecot.delivered("broken@example.org") == []
    assert dovecot.delivered("ghost@example.org") == []


def test_smtp_front_through_dovecot(make_server: MakeServer, dovecot: PrivateDovecot) -> None:
    srv = make_server(handler=Forward(url(dovecot, "inet"), timeout=20))
    with srv.smtp() as c:
        refused = c.sendmail("a@c.test", ["u@example.org", "ghost@example.org"], message("s1"))
        assert list(refused) == ["ghost@example.org"] and refused["ghost@example.org"][0] == 550
        c.mail("a@c.test")
        c.rcpt("u@example.org")
        c.rcpt("broken@example.org")
        # One recipient failed after DATA: SMTP has one reply, so the message is refused.
        code, text = c.data(message("s2"))
        assert (code, text[:5]) == (451, b"4.2.0")
    got = dovecot.delivered("u@example.org")
    # s1 once; s2 was delivered to u@ although the client was told to retry (documented:
    # a duplicate rather than a loss).
    assert [b"Subject: s1" in m for m in got].count(True) == 1
    assert dovecot.delivered("broken@example.org") == []
