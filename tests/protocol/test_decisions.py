"""The core's held commands (session hooks) and AUTH events, without I/O (issue 12)."""

from __future__ import annotations

import pytest

from smtpx import Address, Response
from smtpx.protocol import (
    NEED_DATA,
    AuthRequest,
    AuthResponse,
    Connection,
    Greeted,
    MailFrom,
    ProtocolConfig,
    ProtocolError,
    RcptTo,
    State,
)

REFUSED = Response(550, "5.1.1", "No such user")


def state(conn: Connection) -> State:
    return conn.state  # a call, so that mypy does not narrow the attribute between steps


def helo(conn: Connection) -> str:
    return conn.helo


def sender(conn: Connection) -> Address | None:
    return conn.mail_from


def cfg(**options: object) -> ProtocolConfig:
    # Pipelined EHLO here is a shortcut of the tests, not what they are about.
    return ProtocolConfig(hostname="mx", forbid_unauth_pipelining=False, **options)  # type: ignore[arg-type]


def test_without_hooks_nothing_is_held() -> None:
    conn = Connection(cfg())
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    events = [conn.next_event() for _ in range(4)]
    assert [type(e) for e in events] == [Greeted, MailFrom, RcptTo, type(NEED_DATA)]
    assert state(conn) is State.COMMAND
    with pytest.raises(ProtocolError):
        conn.decide(None)


def test_a_held_rcpt_waits_for_decide_and_keeps_reply_order() -> None:
    conn = Connection(cfg(hook_rcpt=True))
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@d.example>\r\n")
    conn.receive_data(b"RCPT TO:<y@d.example>\r\nDATA\r\n")
    assert isinstance(conn.next_event(), Greeted)
    assert isinstance(conn.next_event(), MailFrom)
    held = conn.next_event()
    assert held == RcptTo(Address("x@d.example"), {})
    assert state(conn) is State.AWAIT_REPLY
    assert conn.next_event() is NEED_DATA  # the next RCPT is not read yet
    assert conn.rcpt_to == []
    conn.decide(REFUSED)
    assert conn.next_event() == RcptTo(Address("y@d.example"), {})
    conn.decide(None)
    assert conn.next_event() is NEED_DATA
    lines = conn.data_to_send().split(b"\r\n")
    assert lines[-4:-1] == [b"550 5.1.1 No such user", b"250 2.1.5 OK", lines[-2]]
    assert lines[-2].startswith(b"354")
    assert conn.rcpt_to == [Address("y@d.example")]  # the refusal kept the transaction
    assert state(conn) is State.DATA


def test_a_held_helo_and_mail() -> None:
    conn = Connection(cfg(hook_helo=True, hook_mail=True))
    conn.receive_data(b"EHLO c\r\n")
    assert conn.next_event() == Greeted("c", True)
    assert conn.helo == ""
    conn.decide(Response(550, "5.7.1", "Bad HELO"))
    assert conn.helo == ""
    conn.receive_data(b"EHLO good\r\n")
    conn.next_event()
    conn.decide(Response(250, "", "hello there"))
    assert helo(conn) == "good"
    conn.receive_data(b"MAIL FROM:<a@b.example> SIZE=10\r\n")
    assert conn.next_event() == MailFrom(Address("a@b.example"), {"SIZE": "10"})
    assert sender(conn) is None
    conn.decide(None)
    assert sender(conn) == Address("a@b.example")
    out = conn.data_to_send()
    assert out.startswith(b"550 5.7.1 Bad HELO\r\n250-hello there\r\n250-SIZE")
    assert out.endswith(b"250 2.1.0 OK\r\n")


def test_hook_refusals_count_toward_max_errors() -> None:
    conn = Connection(cfg(hook_rcpt=True, max_errors=3))
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n")
    conn.next_event(), conn.next_event()
    for i in range(3):
        conn.receive_data(b"RCPT TO:<x%d@d.example>\r\n" % i)
        conn.next_event()
        conn.decide(REFUSED)
    assert state(conn) is State.CLOSED
    assert conn.data_to_send().endswith(b"421 4.7.0 Too many errors, closing connection\r\n")


def test_auth_events() -> None:
    conn = Connection(cfg(auth_mechanisms=("PLAIN", "LOGIN"), auth_insecure=True))
    conn.receive_data(b"EHLO c\r\nAUTH PLAIN\r\n")
    conn.next_event()
    assert conn.next_event() == AuthRequest("PLAIN", None)
    assert state(conn) is State.AWAIT_REPLY
    conn.sasl_challenge(b"334 \r\n")
    assert state(conn) is State.AUTH
    conn.receive_data(b"A" * 12288 + b"\r\n")
    assert conn.next_event() == AuthResponse(b"A" * 12288)
    conn.sasl_challenge(b"334 \r\n")
    conn.receive_data(b"A" * 12289 + b"\r\n")
    assert conn.next_event() == AuthResponse(None)  # over RFC 4954's 12288 octets
    conn.auth_done(Response(500, "5.5.6", "too long"))
    conn.receive_data(b"AUTH LOGIN =\r\n")
    assert conn.next_event() == AuthRequest("LOGIN", "=")
    conn.auth_done(Response(235, "2.7.0", "ok"), "alice")
    assert conn.authenticated == "alice"
    assert b"250 AUTH PLAIN LOGIN" in conn.data_to_send()
    assert "secret" not in repr(AuthRequest("PLAIN", "secret"))
    assert "secret" not in repr(AuthResponse(b"secret"))


def test_auth_not_offered_before_tls_and_required_for_mail() -> None:
    conn = Connection(cfg(auth_mechanisms=("PLAIN",), auth_required=True))
    conn.receive_data(b"EHLO c\r\nAUTH PLAIN\r\nMAIL FROM:<a@b.example>\r\n")
    for _ in range(3):
        conn.next_event()
    out = conn.data_to_send()
    assert b"AUTH" not in out.split(b"\r\n538")[0]
    assert b"538 5.7.11" in out and b"530 5.7.0 Authentication required" in out
