"""Issue 9: hostile input the protocol core must answer with a reply, never an exception."""

from __future__ import annotations

import logging
import sys

import pytest

from smtpx import responses as R
from smtpx.protocol import (
    NEED_DATA,
    CloseConnection,
    Connection,
    Event,
    Greeted,
    Message,
    NeedData,
    ProtocolConfig,
    State,
    XClient,
)

# The module the active core came from (pure, or compiled from the same source): the bug tests
# below break it from the inside.
_connection = sys.modules[Connection.__module__]

CONFIG = ProtocolConfig(hostname="mx.test", max_size=1000)


def drive(conn: Connection, data: bytes) -> tuple[list[Event], bytes]:
    conn.receive_data(data)
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        assert not isinstance(event, NeedData)
        events.append(event)
        if isinstance(event, Message | CloseConnection):
            break
    return events, conn.data_to_send()


def codes(out: bytes) -> list[str]:
    return [line[:3].decode() for line in out.split(b"\r\n") if line and line[3:4] == b" "]


def ready(config: ProtocolConfig = CONFIG, *, xclient: bool | None = None) -> Connection:
    conn = Connection(config, xclient=xclient)
    conn.greeting()
    conn.data_to_send()
    drive(conn, b"EHLO client.test\r\n")
    return conn


def one_by_one(conn: Connection, lines: list[bytes]) -> bytes:
    """Send each line only after the previous reply, as a client that waits does."""
    out = b""
    for line in lines:
        out += drive(conn, line)[1]
    return out


# ------------------------------------------------------------- item 5: SIZE=² and the guard
# Superscript two, Arabic-Indic digits, fullwidth digits, mathematical bold nine.
@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "\uff11\uff10", "\U0001d7d7"])
def test_non_ascii_digits_in_size_are_a_syntax_error(value: str) -> None:
    # "²".isdigit() is True and int("²") raises: the exception once escaped the core.
    conn = ready()
    events, out = drive(conn, f"MAIL FROM:<a@b.c> SIZE={value}\r\n".encode())
    assert events == []
    assert out.startswith(b"501 5.5.4")
    assert codes(drive(conn, b"MAIL FROM:<a@b.c> SIZE=10\r\n")[1]) == ["250"]


def test_size_after_a_message_keeps_the_session() -> None:
    # The finding: pipelined after a message's dot, it broke the handler task.
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, _ = drive(conn, b"x\r\n.\r\nMAIL FROM:<a@b.c> SIZE=\xc2\xb2\r\n")
    assert isinstance(events[0], Message)
    conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
    assert conn.next_event() is NEED_DATA
    assert codes(conn.data_to_send()) == ["250", "501"]
    assert conn.state is State.COMMAND


def test_a_bug_in_a_command_becomes_451_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Connection, arg: str) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(_connection._DISPATCH, "VRFY", broken)
    conn = ready()
    with caplog.at_level(logging.ERROR, logger="smtpx.protocol"):
        _, out = drive(conn, b"VRFY x\r\n")
        assert out == R.ERROR_LOCAL_PROCESSING.wire()
        _, out = drive(conn, b"VRFY y\r\n")
        assert out == R.ERROR_LOCAL_PROCESSING.wire()
        assert codes(drive(conn, b"MAIL FROM:<a@b.c>\r\n")[1]) == ["250"]
    logged = [r for r in caplog.records if r.name == "smtpx.protocol"]
    assert len(logged) == 1 and logged[0].exc_info is not None
    # A third and fourth: the core stops trusting itself and closes cleanly.
    drive(conn, b"VRFY z\r\n")
    events, out = drive(conn, b"VRFY w\r\n")
    assert events == [CloseConnection("internal error")]
    assert out.startswith(b"421 4.3.0") and conn.state is State.CLOSED


def test_a_bug_in_the_data_reader_closes_with_421(monkeypatch: pytest.MonkeyPatch) -> None:
    class BrokenReader:
        def __init__(self, *args: object) -> None:
            pass

        done = False

        def feed(self, data: bytes) -> int:
            raise MemoryError

    conn = ready()
    monkeypatch.setattr(_connection, "DataReader", BrokenReader)
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    _, out = drive(conn, b"body\r\n")
    assert out == b"421 4.3.0 Internal error, closing connection\r\n"
    assert conn.state is State.CLOSED
    assert drive(conn, b"more\r\n") == ([], b"")


# ------------------------------------------------------------------- item 10: junk and errors
def test_junk_commands_are_limited() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", max_junk_commands=6))
    out = one_by_one(conn, [b"NOOP\r\n", b"RSET\r\n", b"VRFY a\r\n", b"HELP\r\n", b"NOOP\r\n"])
    assert codes(out) == ["250", "250", "252", "214", "250"]
    events, out = drive(conn, b"RSET\r\n")
    assert codes(out) == ["250"] and events == []
    events, out = drive(conn, b"NOOP\r\n")
    assert out == R.ERROR_TOO_MANY_JUNK_COMMANDS.wire()
    assert out.startswith(b"421 4.7.0")
    assert events == [CloseConnection("too many junk commands")]
    assert conn.state is State.CLOSED


def test_junk_limit_default_is_postfix_100() -> None:
    conn = ready()
    out = one_by_one(conn, [b"NOOP\r\n"] * 100)
    assert codes(out) == ["250"] * 100
    assert drive(conn, b"NOOP\r\n")[1].startswith(b"421 4.7.0")


def test_an_accepted_message_resets_the_junk_count() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", max_junk_commands=2))
    one_by_one(conn, [b"NOOP\r\n", b"NOOP\r\n"])
    one_by_one(conn, [b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n", b"DATA\r\n"])
    drive(conn, b"x\r\n.\r\n")
    conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
    conn.data_to_send()
    assert codes(one_by_one(conn, [b"NOOP\r\n", b"NOOP\r\n"])) == ["250", "250"]
    assert drive(conn, b"NOOP\r\n")[1].startswith(b"421")


def test_hard_error_limit_closes_after_20_errors() -> None:
    # Postfix smtpd_hard_error_limit = 20: every refused command counts, whatever the reason.
    conn = ready()
    bad = [b"MAIL FROM:<bad\r\n", b"RCPT TO:<a@b.c>\r\n", b"DATA\r\n", b"EHLO\r\n", b"\xff\r\n"]
    out = one_by_one(conn, (bad * 4)[:19])
    assert len(codes(out)) == 19 and "421" not in codes(out)
    events, out = drive(conn, b"MAIL FROM:<>  X=\x01\r\n")
    assert codes(out) == ["501", "421"]
    assert out.endswith(R.ERROR_TOO_MANY_ERRORS.wire())
    assert events == [CloseConnection("too many errors")]
    assert conn.state is State.CLOSED


def test_refused_messages_count_as_errors() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", max_size=10, max_errors=2))
    one_by_one(conn, [b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n", b"DATA\r\n"])
    assert codes(drive(conn, b"x" * 50 + b"\r\n.\r\n")[1]) == ["552"]
    one_by_one(conn, [b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n", b"DATA\r\n"])
    _, out = drive(conn, b"a\nb\r\n.\r\n")
    assert codes(out) == ["550", "421"]
    assert conn.state is State.CLOSED


def test_error_and_junk_limits_can_be_disabled() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", max_errors=0, max_junk_commands=0))
    out = one_by_one(conn, [b"NOOP\r\n", b"DATA\r\n"] * 150)
    assert codes(out) == ["250", "503"] * 150


# ---------------------------------------------------------------- item 11: XCLIENT zone ids
@pytest.mark.parametrize(
    "attr",
    [
        b"ADDR=fe80::1%25eth0",
        b"ADDR=IPV6:fe80::1%25x",
        b"ADDR=fe80::1%25+0D+0AX-Evil:+1",
        b"DESTADDR=fe80::1%25lo",
    ],
)
def test_xclient_refuses_ipv6_zone_ids(attr: bytes) -> None:
    conn = ready(xclient=True)
    events, out = drive(conn, b"XCLIENT " + attr + b"\r\n")
    assert events == []
    assert out.startswith(b"501 5.5.4")


def test_address_literals_refuse_zone_ids() -> None:
    conn = ready()
    assert codes(drive(conn, b"EHLO [IPv6:fe80::1%eth0]\r\n")[1]) == ["501"]
    assert codes(drive(conn, b"EHLO [IPv6:fe80::1]\r\n")[1]) == ["250"]
    assert drive(conn, b"MAIL FROM:<a@[IPv6:fe80::1%x]>\r\n")[1].startswith(b"501 5.1.7")


# ------------------------------------------------------------------- item 12: XCLIENT HELO
@pytest.mark.parametrize(
    "helo",
    [
        b"a+20b",
        b"x+0D+0AReceived:+forged",
        b"bad..name",
        b"-lead.test",
        b"caf+C3+A9.test",
        b"[1.2.3.999]",
        b"a+09b",
    ],
)
def test_xclient_helo_is_checked_like_ehlo(helo: bytes) -> None:
    conn = ready(xclient=True)
    events, out = drive(conn, b"XCLIENT HELO=" + helo + b"\r\n")
    assert events == [] and out.startswith(b"501 5.5.4")
    assert conn.helo == "client.test"


def test_xclient_helo_accepts_names_and_literals() -> None:
    for helo, name in [(b"mx.example+2Eorg", "mx.example.org"), (b"[192.0.2.1]", "[192.0.2.1]")]:
        conn = ready(xclient=True)
        events, _ = drive(conn, b"XCLIENT HELO=" + helo + b"\r\n")
        assert events == [XClient({"HELO": name})]
        assert conn.helo == name


# Found by fuzz/fuzz_xclient.py: LOGIN and PROTO were taken as they came, so an xtext-encoded
# control character (or a bidi override) reached the envelope's values and the logs.
@pytest.mark.parametrize(
    "attr",
    [
        b"LOGIN=u[UNAVAI+0EABLE]+40x",
        b"LOGIN=user+0D+0AReceived:+forged",
        b"LOGIN=admin+E2+80+AEevil",
        b"LOGIN=a+7Fb",
        b"PROTO=%{ir}",
        b"PROTO=HTTP",
        b"PROTO=E+0ASMTP",
    ],
)
def test_xclient_login_and_proto_refuse_unsafe_values(attr: bytes) -> None:
    conn = ready(xclient=True)
    events, out = drive(conn, b"XCLIENT " + attr + b"\r\n")
    assert events == [] and out.startswith(b"501 5.5.4")


def test_xclient_login_and_proto_accept_what_postfix_sends() -> None:
    conn = ready(xclient=True)
    events, _ = drive(conn, b"XCLIENT LOGIN=alice+40example.org PROTO=esmtp\r\n")
    assert events == [XClient({"LOGIN": "alice@example.org", "PROTO": "esmtp"})]
    assert conn.esmtp


# ----------------------------------------------------------- item 13: improper pipelining
def test_commands_sent_before_the_354_are_refused() -> None:
    # The finding: a second transaction pipelined behind DATA ran as a second transaction.
    conn = ready()
    one_by_one(conn, [b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n"])
    events, out = drive(conn, b"DATA\r\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\nDATA\r\n")
    assert out == R.SUCCESS_DATA_CMD.wire() + R.FAIL_IMPROPER_PIPELINING.wire()
    assert out.endswith(b"554 5.5.0 Improper command pipelining, closing connection\r\n")
    assert events == [CloseConnection("improper command pipelining")]
    assert conn.state is State.CLOSED


def test_input_in_a_later_read_before_the_354_was_sent_is_refused() -> None:
    conn = ready()
    one_by_one(conn, [b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n"])
    conn.receive_data(b"DATA\r\n")
    assert conn.next_event() is NEED_DATA  # 354 queued, not yet taken by the driver
    conn.receive_data(b"Subject: early\r\n\r\nx\r\n.\r\n")
    assert conn.next_event() == CloseConnection("improper command pipelining")
    assert conn.data_to_send().endswith(R.FAIL_IMPROPER_PIPELINING.wire())


@pytest.mark.parametrize("verb", [b"EHLO x.test", b"NOOP", b"VRFY bob", b"EXPN list", b"HELO x.y"])
def test_input_after_a_command_that_ends_a_group_is_refused(verb: bytes) -> None:
    conn = ready()
    events, out = drive(conn, verb + b"\r\nMAIL FROM:<a@b.c>\r\n")
    assert codes(out)[-1] == "554"
    assert events[-1] == CloseConnection("improper command pipelining")


def test_pipelining_needs_ehlo() -> None:
    # After HELO, PIPELINING was never offered: every command waits for its reply.
    conn = Connection(CONFIG)
    conn.greeting()
    conn.data_to_send()
    drive(conn, b"HELO client.test\r\n")
    _, out = drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n")
    assert codes(out) == ["250", "554"]
    # Before any greeting too.
    conn = Connection(CONFIG)
    assert codes(drive(conn, b"RSET\r\nEHLO x.test\r\n")[1]) == ["250", "554"]


def test_allowed_pipelining_still_works() -> None:
    conn = ready()
    events, out = drive(
        conn, b"RSET\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nRCPT TO:<s@x.y>\r\nDATA\r\n"
    )
    assert codes(out) == ["250", "250", "250", "250", "354"]
    events, _ = drive(conn, b"x\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nQUIT\r\n")
    assert isinstance(events[0], Message)
    conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
    seen = [conn.next_event() for _ in range(3)]
    assert seen[-1] == CloseConnection("quit")
    assert codes(conn.data_to_send()) == ["250", "250", "250", "221"]


def test_pipelining_check_can_be_turned_off() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", forbid_unauth_pipelining=False))
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n")
    events, out = drive(conn, b"DATA\r\nx\r\n.\r\n")
    assert codes(out) == ["354"] and isinstance(events[0], Message)


# -------------------------------------------------------------- item 14: EHLO/HELO names
@pytest.mark.parametrize(
    "name",
    [
        "a\x0bb.test",
        "a.test\x0b",
        "\x0ca.test",
        "a\x1bb.test",
        "a\x7fb.test",
        "a\u0085b.test",
        "a.test\u2028",
        "ex\u202eample.test",
        "a\u00a0b.test",
        "[IPv6:fe80::1%\x1b]",
        "a.test\t",
    ],
)
def test_ehlo_refuses_control_and_format_characters(name: str) -> None:
    for verb in ("EHLO", "HELO"):
        conn = Connection(CONFIG)
        events, out = drive(conn, f"{verb} {name}\r\n".encode())
        assert events == [] and out.startswith(b"501"), (verb, name)
        assert conn.helo == ""


def test_non_ascii_helo_needs_ehlo() -> None:
    # SMTPUTF8 is offered only in the EHLO reply: HELO names are ASCII.
    conn = Connection(CONFIG)
    assert drive(conn, "HELO café.test\r\n".encode())[1].startswith(b"501")
    events, _ = drive(conn, "EHLO café.test\r\n".encode())
    assert events == [Greeted("café.test", True)]


def test_bidi_override_in_a_utf8_address_is_refused() -> None:
    conn = ready()
    out = drive(conn, "MAIL FROM:<a\u202eb@例子.广告> SMTPUTF8\r\n".encode())[1]
    assert out.startswith(b"501")
    out = drive(conn, "MAIL FROM:<ab@例\u2028子.广告> SMTPUTF8\r\n".encode())[1]
    assert out.startswith(b"501")


# ------------------------------------------------------------ item 17: non-UTF-8 commands
def test_command_that_is_not_utf8_is_500_5_5_2() -> None:
    conn = ready()
    _, out = drive(conn, b"MAIL FROM:<a@b.c\xff>\r\n")
    assert out == b"500 5.5.2 Invalid UTF-8 in command line\r\n"
    assert codes(drive(conn, b"\xc3\r\n")[1]) == ["500"]
