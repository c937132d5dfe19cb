"""smtpx forwards to a private Postfix (smtp://) that delivers to Maildirs.

The Postfix instance (``tests/server/postfix.py``) takes mail for two users of example.org
into Maildirs with its ``virtual`` agent, and refuses any other recipient at RCPT. Each
message the client saw accepted must be in the Maildir exactly once; none it saw refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from smtpx.forward import Forward
from tests.edges.edgeutil import free_port, wait_until
from tests.server.postfix import PrivatePostfix
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]


@pytest.fixture
def postfix() -> Iterator[PrivatePostfix]:
    instance = PrivatePostfix("error:no relay", free_port())
    try:
        instance.deliver_to_maildirs("example.org", ["u", "v"])
        instance.start()
        yield instance
    finally:
        instance.stop()


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\nFrom: a@c.test\r\n\r\nbody\r\n..two dots\r\n".encode()


def test_postfix_backend_delivers_to_maildir(
    make_server: MakeServer, postfix: PrivatePostfix
) -> None:
    srv = make_server(handler=Forward(f"smtp://127.0.0.1:{postfix.smtpd_port}", timeout=30))
    with srv.smtp() as c:
        for i in range(3):
            refused = c.sendmail(
                "a@c.test", ["u@example.org", "ghost@example.org"], message(f"m{i}")
            )
            # Postfix's own refusal, at RCPT time.
            assert refused["ghost@example.org"][0] == 550
            assert b"5.1.1" in refused["ghost@example.org"][1]
        c.mail("a@c.test", ["SIZE=100", "BODY=8BITMIME"])
        c.rcpt("v@example.org")
        code, text = c.data(message("to v"))
        assert code == 250 and b"queued as" in text  # Postfix's reply is the client's
    assert wait_until(lambda: len(postfix.maildir("u@example.org")) >= 3, 30), postfix.log_text()
    assert wait_until(lambda: len(postfix.maildir("v@example.org")) >= 1, 30), postfix.log_text()
    got = postfix.maildir("u@example.org")
    assert sorted(m.split(b"Subject: ")[1][:2] for m in got) == [b"m0", b"m1", b"m2"]
    assert all(b"\n..two dots" in m for m in got)  # smtplib stuffed it to three
    (to_v,) = postfix.maildir("v@example.org")
    assert b"Subject: to v" in to_v
    # One connection carried the four transactions (the pool reused it).
    assert (
        postfix.log_text().count("postfix/smtpd")
        and postfix.log_text().count(" connect from ") == 1
    )
