"""Postfix's own LMTP client delivers to smtpx, over TCP and over a Unix socket.

A private Postfix instance (see ``tests/server/postfix.py``) takes a message for three
recipients on its smtpd and hands it to its ``lmtp`` transport pointing at smtpx; the smtpx
handler accepts one recipient, refuses one for good (550) and defers one (451). Postfix's log
must show each outcome per recipient (RFC 2033 4.2): sent, bounced, deferred.
"""

from __future__ import annotations

import os
import pwd
import smtplib
from collections.abc import Callable

import pytest

from smtpx import Envelope, PerRecipient, Response
from smtpx import responses as R
from tests.edges.edgeutil import free_port
from tests.server.postfix import PrivatePostfix
from tests.server.serverthread import ServerThread
from tests.server.unixserver import UnixServer

MakeServer = Callable[..., ServerThread]
RECIPIENTS = ["a@d.test", "b@d.test", "c@d.test"]


async def three_ways(envelope: Envelope) -> Response | None:
    outcome = {"a": None, "b": R.FAIL_RCPT_CMD, "c": R.ERROR_HANDLER}
    return PerRecipient(outcome.get(r.address.split("@")[0]) for r in envelope.rcpt_to)


def inject(postfix: PrivatePostfix) -> None:
    with smtplib.SMTP("127.0.0.1", postfix.smtpd_port, local_hostname="c.test", timeout=30) as c:
        # The null sender: Postfix discards the bounce for b@ instead of delivering it here.
        c.sendmail("", RECIPIENTS, b"Subject: lmtp test\r\nFrom: t@c.test\r\n\r\nhello\r\n")


def check(postfix: PrivatePostfix, received: Callable[[], list[Envelope]]) -> None:
    outcomes = postfix.outcomes(RECIPIENTS)
    assert set(outcomes) == set(RECIPIENTS), postfix.log_text()
    assert "status=sent" in outcomes["a@d.test"]
    assert "250 2.0.0" in outcomes["a@d.test"]
    assert "status=bounced" in outcomes["b@d.test"]
    assert "550 5.1.1" in outcomes["b@d.test"]
    assert "status=deferred" in outcomes["c@d.test"]
    assert "451 4.3.0" in outcomes["c@d.test"]
    for line in outcomes.values():
        assert "postfix/lmtp[" in line
    (env,) = received()
    assert [r.address for r in env.rcpt_to] == RECIPIENTS
    assert env.lmtp
    assert b"hello" in env.data


@pytest.mark.parametrize("transport", ["inet", "unix"])
def test_postfix_lmtp_client(make_server: MakeServer, transport: str) -> None:
    postfix: PrivatePostfix | None = None
    unix: UnixServer | None = None
    try:
        if transport == "inet":
            srv = make_server(lmtp=True, handler=three_ways)
            postfix = PrivatePostfix(f"lmtp:inet:127.0.0.1:{srv.port}", free_port())
            received = lambda: srv.envelopes  # noqa: E731
        else:
            postfix = PrivatePostfix("lmtp:unix:PATH", free_port())
            path = str(postfix.root / "lmtp.sock")
            postfix.set_transport(f"lmtp:unix:{path}")
            unix = UnixServer(path, lmtp=True, handler=three_ways).start()
            # Default mode 0660: Postfix's lmtp client (user postfix) gets in by the group.
            os.chown(path, -1, pwd.getpwnam("postfix").pw_gid)
            received = lambda: unix.received  # noqa: E731
        postfix.start()
        inject(postfix)
        check(postfix, received)
    finally:
        if postfix is not None:
            postfix.stop()
        if unix is not None:
            unix.stop()
