"""Sans-IO tests of the protocol core: bytes in, replies and events out."""

from __future__ import annotations

from smtpx import responses as R
from smtpx.address import Address
from smtpx.protocol import (
    NEED_DATA,
    CloseConnection,
    Connection,
    ConnectionClosed,
    Event,
    Greeted,
    MailFrom,
    Message,
    NeedData,
    ProtocolConfig,
    RcptTo,
    StartTLS,
    State,
    XClient,
)
from smtpx.responses import SUCCESS_MESSAGE_ACCEPTED

CONFIG = ProtocolConfig(hostname="mx.test", max_size=1000, max_recipients=3)


def drive(conn: Connection, data: bytes) -> tuple[list[Event], bytes]:
    conn.receive_data(data)
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            break
        assert not isinstance(event, NeedData)
        events.append(event)
        if isinstance(event, Message):
            break
    return events, conn.data_to_send()


def codes(out: bytes) -> list[str]:
    return [line[:3].decode() for line in out.split(b"\r\n") if line and line[3:4] == b" "]


def ready(config: ProtocolConfig = CONFIG, **kw: bool | None) -> Connection:
    conn = Connection(config, **kw)  # type: ignore[arg-type]
    conn.greeting()
    assert conn.data_to_send() == b"220 mx.test ESMTP smtpx\r\n"
    drive(conn, b"EHLO client.test\r\n")
    return conn


def test_ehlo_advertises_extensions() -> None:
    conn = Connection(ProtocolConfig(hostname="mx.test", tls_available=True), xclient=True)
    events, out = drive(conn, b"EHLO client.test\r\n")
    assert events == [Greeted("client.test", True)]
    lines = out.decode().split("\r\n")[:-1]
    assert lines[0] == "250-mx.test greets client.test"
    keywords = [line[4:] for line in lines[1:]]
    assert keywords[:-1] == [
        "SIZE 10485760",
        "8BITMIME",
        "PIPELINING",
        "CHUNKING",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ]
    assert keywords[-1].startswith("XCLIENT ")
    assert lines[-1].startswith("250 ") and all(x.startswith("250-") for x in lines[:-1])


def test_ehlo_without_tls_or_xclient_offers_neither() -> None:
    conn = Connection(CONFIG)
    _, out = drive(conn, b"EHLO client.test\r\n")
    assert b"STARTTLS" not in out and b"XCLIENT" not in out


def test_helo_needs_a_domain() -> None:
    conn = Connection(CONFIG)
    for bad in (b"HELO\r\n", b"EHLO \r\n", b"EHLO a b\r\n", b"HELO bad..name\r\n"):
        _, out = drive(conn, bad)
        assert codes(out) == ["501"], bad
    _, out = drive(conn, b"HELO [192.0.2.1]\r\n")
    assert out == b"250 mx.test\r\n"


def test_sequence_errors_are_503() -> None:
    conn = Connection(CONFIG)
    assert codes(drive(conn, b"MAIL FROM:<a@b.c>\r\n")[1]) == ["503"]
    drive(conn, b"EHLO c.test\r\n")
    assert codes(drive(conn, b"RCPT TO:<a@b.c>\r\n")[1]) == ["503"]
    assert codes(drive(conn, b"DATA\r\n")[1]) == ["503"]
    assert codes(drive(conn, b"MAIL FROM:<a@b.c>\r\n")[1]) == ["250"]
    assert codes(drive(conn, b"DATA\r\n")[1]) == ["503"]
    assert codes(drive(conn, b"MAIL FROM:<x@y.z>\r\n")[1]) == ["503"]


def test_verbs_are_whole_and_case_insensitive() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", forbid_unauth_pipelining=False))
    _, out = drive(conn, b"noop\r\nNOOPX\r\nQuItNoW\r\nEXPN list\r\nVRFY bob\r\nHELP\r\n")
    assert codes(out) == ["250", "500", "500", "502", "252", "214"]


def test_null_sender_and_postmaster_are_accepted() -> None:
    conn = ready()
    events, out = drive(conn, b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\n")
    assert codes(out) == ["250", "250"]
    assert events == [MailFrom(Address(""), {}), RcptTo(Address("Postmaster"), {})]


def test_address_grammar() -> None:
    good = [
        b"<a@b.c>",
        b'<"quoted local"@x.y>',
        b"<a@[192.0.2.1]>",
        b"<a@[IPv6:2001:db8::1]>",
        b"<@relay.example:a@b.c>",
        b"a@b.c",
        b"<a@b>",
        b"<a+tag@b.c>",
    ]
    bad = [
        b"<a.@b.c>",
        b"<.a@b.c>",
        b"<a..b@c.d>",
        b"<a@b..c>",
        b"<a@.b.c>",
        b"<a@b.c",
        b"<a b@c.d>",
        b"<not-an-email>",
        b"<a@[999.1.1.1]>",
    ]
    for path in good:
        conn = ready()
        assert codes(drive(conn, b"MAIL FROM:" + path + b"\r\n")[1]) == ["250"], path
    for path in bad:
        conn = ready()
        out = drive(conn, b"MAIL FROM:" + path + b"\r\n")[1]
        assert out.startswith(b"501 5.1.7"), (path, out)
        drive(conn, b"MAIL FROM:<a@b.c>\r\n")
        out = drive(conn, b"RCPT TO:" + path + b"\r\n")[1]
        assert out.startswith(b"501 5.1.3"), (path, out)


def test_utf8_addresses_need_smtputf8() -> None:
    conn = ready()
    out = drive(conn, "MAIL FROM:<用户@例子.广告>\r\n".encode())[1]
    assert out.startswith(b"553 5.6.7")
    _, out = drive(conn, "MAIL FROM:<用户@例子.广告> SMTPUTF8\r\n".encode())
    assert codes(out) == ["250"]
    _events, out = drive(conn, "RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n".encode())
    assert codes(out) == ["250"]


def test_mail_parameters() -> None:
    conn = ready()
    assert drive(conn, b"MAIL FROM:<a@b.c> SIZE=1001\r\n")[1].startswith(b"552 5.3.4")
    assert drive(conn, b"MAIL FROM:<a@b.c> FOO=bar\r\n")[1].startswith(b"555 5.5.4")
    assert drive(conn, b"MAIL FROM:<a@b.c> BODY=BINARYMIME\r\n")[1].startswith(b"501")
    assert drive(conn, b"MAIL FROM:<a@b.c> SIZE=1 SIZE=2\r\n")[1].startswith(b"501")
    _events, out = drive(conn, b"MAIL FROM:<a@b.c> SIZE=1000 BODY=8bitmime\r\n")
    assert codes(out) == ["250"]
    assert conn.body_type == "8BITMIME"
    assert drive(conn, b"RCPT TO:<r@x.y> NOTIFY=NEVER\r\n")[1].startswith(b"555")


def test_recipient_limit() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\n")
    out = drive(conn, b"".join(b"RCPT TO:<r%d@x.y>\r\n" % i for i in range(4)))[1]
    assert codes(out) == ["250", "250", "250", "452"]
    assert b"452 4.5.3" in out


def test_unrecognized_limit_closes_with_421() -> None:
    conn = ready()
    events, out = drive(conn, b"FOO\r\nBAR\r\nBAZ\r\nQUX\r\nZAP\r\nNOOP\r\n")
    assert codes(out) == ["500", "500", "500", "500", "421"]
    assert events == [CloseConnection("too many unrecognized commands")]
    assert conn.state is State.CLOSED


def test_long_line_is_500_and_connection_stays_usable() -> None:
    conn = ready()
    _, out = drive(conn, b"NOOP " + b"x" * 2000 + b"\r\nNOOP\r\n")
    assert codes(out) == ["500", "250"]
    # A line that never ends does not grow the buffer past the limit.
    for _ in range(100):
        conn.receive_data(b"y" * 10_000)
        assert conn.next_event() is NEED_DATA
        assert len(conn._buf) <= 10_000 + 1030
    _, out = drive(conn, b"\r\nNOOP\r\n")
    assert codes(out) == ["500", "250"]


def test_data_roundtrip_keeps_crlf_and_unstuffs() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, _ = drive(conn, b"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nNOOP\r\n")
    (message,) = events
    assert isinstance(message, Message)
    assert message.data == b"Subject: hi\r\n\r\n.dot\r\nbody\r\n"
    assert message.rcpt_to == (Address("r@x.y"),)
    # The pipelined NOOP waits for the message's reply.
    assert conn.next_event() is NEED_DATA and conn.data_to_send() == b""
    conn.send(SUCCESS_MESSAGE_ACCEPTED)
    events, out = drive(conn, b"")
    assert out == b"250 2.0.0 Message accepted\r\n250 2.0.0 OK\r\n"


def test_message_split_at_every_byte() -> None:
    payload = b"Subject: x\r\n\r\n.a\r\n..b\r\nc\r\n.\r\nRSET\r\n"
    for cut in range(1, len(payload)):
        conn = ready()
        drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
        events, _ = drive(conn, payload[:cut])
        events += drive(conn, payload[cut:])[0]
        assert [type(e) for e in events] == [Message], cut
        assert isinstance(events[0], Message)
        assert events[0].data == b"Subject: x\r\n\r\na\r\n.b\r\nc\r\n"


def test_smuggling_bare_lf_dot_never_ends_data() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, out = drive(conn, b"Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<evil@x.y>\r\n")
    assert events == [] and out == b""
    events, out = drive(conn, b"more\r\n.\r\nNOOP\r\n")
    assert events == []
    assert codes(out) == ["550", "250"]
    assert b"5.5.2" in out


def test_normalize_converts_bare_line_endings() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", normalize_line_endings=True))
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, _ = drive(conn, b"A: b\nc\rd\r\n.\r\n")
    assert isinstance(events[0], Message)
    assert events[0].data == b"A: b\r\nc\r\nd\r\n"


def test_oversized_message_is_552_and_connection_continues() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, out = drive(conn, b"x" * 5000 + b"\r\n.\r\nNOOP\r\n")
    assert events == []
    assert out.startswith(b"552 5.3.4") and codes(out) == ["552", "250"]


def test_starttls_discards_pipelined_plaintext() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", tls_available=True))
    events, out = drive(conn, b"STARTTLS\r\nMAIL FROM:<inj@x.y>\r\n")
    assert events == [StartTLS(discarded=len(b"MAIL FROM:<inj@x.y>\r\n"))]
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    drive(conn, b"RCPT TO:<x@y.z>\r\n")  # still plaintext: ignored
    conn.tls_established()
    assert conn.helo == "" and conn.tls_active
    assert codes(drive(conn, b"MAIL FROM:<a@b.c>\r\n")[1]) == ["503"]  # EHLO again first
    _, out = drive(conn, b"EHLO c.test\r\n")
    assert b"STARTTLS" not in out
    _, out = drive(conn, b"STARTTLS\r\nSTARTTLS x\r\n")
    assert codes(out) == ["503", "501"]


def test_starttls_without_tls_is_502() -> None:
    assert codes(drive(ready(), b"STARTTLS\r\n")[1]) == ["502"]


def test_xclient() -> None:
    disabled = ready()
    assert codes(drive(disabled, b"XCLIENT ADDR=1.2.3.4\r\n")[1]) == ["500"]
    untrusted = ready(xclient=False)
    assert drive(untrusted, b"XCLIENT ADDR=1.2.3.4\r\n")[1].startswith(b"550 5.7.0")
    conn = ready(xclient=True)
    events, out = drive(conn, b"XCLIENT ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE] HELO=a+2Eb\r\n")
    assert events == [XClient({"ADDR": "IPV6:2001:db8::1", "NAME": None, "HELO": "a.b"})]
    assert out == b"220 mx.test ESMTP smtpx\r\n"
    assert conn.helo == "a.b"
    drive(conn, b"EHLO x.test\r\n")
    drive(conn, b"MAIL FROM:<a@b.c>\r\n")
    assert codes(drive(conn, b"XCLIENT ADDR=1.2.3.4\r\n")[1]) == ["503"]
    assert codes(drive(conn, b"RSET\r\nXCLIENT FOO=1\r\n")[1]) == ["250", "501"]


def test_eof_events() -> None:
    conn = ready()
    assert drive(conn, b"")[0] == [ConnectionClosed(in_data=False)]
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    drive(conn, b"partial")
    assert drive(conn, b"")[0] == [ConnectionClosed(in_data=True)]


def test_helo_survives_transactions() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    drive(conn, b"x\r\n.\r\n")
    conn.send(SUCCESS_MESSAGE_ACCEPTED)
    drive(conn, b"RSET\r\n")
    assert conn.helo == "client.test" and conn.esmtp


def test_nul_in_data_is_refused_after_the_real_end() -> None:
    # Issue 9 item 15: "CRLF NUL . CRLF" is no end, and the message is refused whole.
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, out = drive(conn, b"Subject: x\r\n\r\nbody\r\n\x00.\r\nRSET\r\n")
    assert events == [] and out == b""
    events, out = drive(conn, b"more\r\n.\r\nNOOP\r\n")
    assert events == []
    assert out == R.FAIL_NUL_IN_DATA.wire() + R.SUCCESS_NOOP_CMD.wire()
    assert out.startswith(b"550 5.6.0")
    assert not conn.in_transaction


def test_allow_nul_stores_it() -> None:
    conn = ready(ProtocolConfig(hostname="mx.test", allow_nul=True))
    drive(conn, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
    events, _ = drive(conn, b"a\x00b\r\n.\r\n")
    assert isinstance(events[0], Message) and events[0].data == b"a\x00b\r\n"


def test_draining_the_message_reader_leaves_the_rest_in_the_message_event() -> None:
    # A driver that streams a long message out takes the judged bytes as they come; the
    # Message event then carries the rest, and together they are the message.
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    reader = conn.message_reader
    assert reader is not None
    taken: list[bytes] = []
    for piece in (b"Subject: x\r\n\r\n..dot\r", b"\nline\r\n", b"more\r\n."):
        events, _ = drive(conn, piece)
        assert events == []
        taken += reader.drain()
    events, out = drive(conn, b"\r\nQUIT\r\n")
    [message] = events
    assert isinstance(message, Message)
    assert b"".join(taken) + message.data == b"Subject: x\r\n\r\n.dot\r\nline\r\nmore\r\n"
    assert conn.message_reader is None
    assert codes(out) == []


def test_a_refused_message_drops_its_reader_even_after_draining() -> None:
    conn = ready()
    drive(conn, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    reader = conn.message_reader
    assert reader is not None
    drive(conn, b"x" * 600 + b"\r\n")
    assert reader.drain()
    events, out = drive(conn, b"y" * 600 + b"\r\n.\r\n")
    assert events == []
    assert codes(out) == ["552"]  # over max_size=1000: the verdict is the same
    assert conn.message_reader is None
