"""CHUNKING / BDAT (RFC 3030) over real sockets: raw exchanges, refused chunks read to the end."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from smtpx import Envelope, PerRecipient, Response
from smtpx import responses as R
from tests.server.serverthread import RawClient, ServerThread

MakeServer = Callable[..., ServerThread]
OPEN = b"EHLO c.test\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n"


def replies(client: RawClient, count: int) -> list[bytes]:
    return [client.reply() for _ in range(count)]


def greet(client: RawClient) -> None:
    assert client.reply().startswith(b"220 ")


def test_chunks_make_one_message(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False)
    with srv.raw() as c:
        greet(c)
        ehlo = c.cmd(b"EHLO c.test\r\n")
        assert b"250-CHUNKING\r\n" in ehlo
        c.send(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nBDAT 11\r\nSubject: a\r")
        c.send(b"BDAT 9 LAST\r\n\n\r\nbody\r\n")
        got = replies(c, 4)
        assert [r[:4] for r in got] == [b"250 ", b"250 ", b"250 ", b"250 "]
        assert got[2] == b"250 2.0.0 11 octets received\r\n"
        assert c.cmd(b"QUIT\r\n").startswith(b"221")
    (env,) = srv.wait_for_envelopes(1)
    assert env.data == b"Subject: a\r\n\r\nbody\r\n"
    assert env.chunked


def test_bdat_0_last_is_an_empty_message(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False)
    with srv.raw() as c:
        greet(c)
        c.send(OPEN + b"BDAT 0 LAST\r\n")
        assert replies(c, 4)[-1] == b"250 2.0.0 Message accepted\r\n"
    assert srv.wait_for_envelopes(1)[0].data == b""


def test_refused_chunk_is_read_to_its_end(make_server: MakeServer) -> None:
    # No transaction: the chunk is refused with 503, but its 32 octets, which look like
    # commands, are read and dropped; the NOOP after it is the next command.
    srv = make_server(forbid_unauth_pipelining=False)
    body = b"MAIL FROM:<evil@x.y>\r\nQUIT\r\nRSET"
    assert len(body) == 32
    with srv.raw() as c:
        greet(c)
        c.cmd(b"EHLO c.test\r\n")
        c.send(b"BDAT 32\r\n" + body[:10])
        time.sleep(0.05)
        c.send(body[10:] + b"NOOP\r\n")
        assert c.reply().startswith(b"503 5.5.1")
        assert c.reply().startswith(b"250 2.0.0")  # NOOP, not MAIL or QUIT
        assert c.cmd(b"QUIT\r\n").startswith(b"221")
    assert srv.received == []


def test_pipelined_session_split_everywhere(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False, max_size=60)
    stream = (
        b"BDAT 6\r\nQUIT\r\n"  # refused (no transaction), read
        + OPEN[13:]
        + b"BDAT 4\r\nab\r\nBDAT 3 LAST\r\ncd\n"  # bare LF: refused whole, transaction over
        + OPEN[13:]
        + b"BDAT 40\r\n"
        + b"x" * 40
        + b"BDAT 40\r\n"
        + b"y" * 40  # over max_size: 552
        + b"BDAT 2 LAST\r\nhi"  # no transaction any more: 503
        + OPEN[13:]
        + b"BDAT 4 LAST\r\nok\r\n"
        + b"NOOP\r\n"
    )
    expected = [b"503", b"250", b"250", b"250", b"550", b"250", b"250", b"250", b"552"]
    expected += [b"503", b"250", b"250", b"250", b"250"]
    step = 7
    for cut in range(0, len(stream), step):
        with srv.raw() as c:
            greet(c)
            c.cmd(b"EHLO c.test\r\n")
            c.send(stream[:cut])
            time.sleep(0.002)
            c.send(stream[cut:])
            got = [r[:3] for r in replies(c, len(expected))]
            assert got == expected, cut
    assert [e.data for e in srv.received] == [b"ok\r\n"] * len(range(0, len(stream), step))


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (b"BDAT abc", b"501 5.5.4"),
        ("BDAT \u0665".encode(), b"501 5.5.4"),
        ("BDAT \u00b2".encode(), b"501 5.5.4"),
        (b"BDAT 99999999999999999999", b"552 5.3.4"),
        (b"BDAT 1001", b"552 5.3.4"),
    ],
)
def test_unframeable_chunk_gets_a_reply_and_a_close(
    make_server: MakeServer, command: bytes, code: bytes
) -> None:
    srv = make_server(forbid_unauth_pipelining=False, max_size=1000)
    with srv.raw() as c:
        greet(c)
        c.send(OPEN + command + b"\r\nRSET\r\n")
        got = replies(c, 4)
        assert got[-1].startswith(code)
        assert c.closed()


def test_size_limit_across_chunks(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False, max_size=100)
    with srv.raw() as c:
        greet(c)
        c.send(OPEN + b"BDAT 60\r\n" + b"a" * 60)
        assert replies(c, 4)[-1] == b"250 2.0.0 60 octets received\r\n"
        assert c.cmd(b"BDAT 41 LAST\r\n" + b"b" * 41).startswith(b"552 5.3.4")
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
    assert srv.received == []


def test_data_and_bdat_never_mix(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False)
    with srv.raw() as c:
        greet(c)
        c.send(OPEN + b"BDAT 3\r\nab\n")
        replies(c, 4)
        assert c.cmd(b"DATA\r\n").startswith(b"503 5.5.1")


def test_nonlast_bdat_0_is_a_junk_command(make_server: MakeServer) -> None:
    srv = make_server(forbid_unauth_pipelining=False, max_junk_commands=3)
    with srv.raw() as c:
        greet(c)
        c.send(OPEN + b"BDAT 0\r\n" * 4)
        got = replies(c, 7)
        assert [r[:3] for r in got[3:]] == [b"250", b"250", b"250", b"421"]
        assert c.closed()


@pytest.mark.parametrize(
    ("normalize", "allow_nul", "content", "reply", "stored"),
    [
        (False, False, b"a\nb\r\n", b"550 5.5.2", None),
        (False, False, b"a\rb\r\n", b"550 5.5.2", None),
        (True, False, b"a\nb\r", b"250", b"a\r\nb\r\n"),
        (False, False, b"a\0b\r\n", b"550 5.6.0", None),
        (False, True, b"a\0b\r\n", b"250", b"a\0b\r\n"),
    ],
)
def test_bdat_follows_the_data_policies(
    make_server: MakeServer,
    normalize: bool,
    allow_nul: bool,
    content: bytes,
    reply: bytes,
    stored: bytes | None,
) -> None:
    # A bare CR/LF stored from BDAT and relayed by DATA could end that DATA early downstream
    # (SMTP smuggling): BDAT content obeys the same rules as DATA content.
    srv = make_server(
        forbid_unauth_pipelining=False, normalize_line_endings=normalize, allow_nul=allow_nul
    )
    with srv.raw() as c:
        greet(c)
        half = len(content) // 2
        c.send(OPEN + b"BDAT %d\r\n" % half + content[:half])
        c.send(b"BDAT %d LAST\r\n" % (len(content) - half) + content[half:])
        assert replies(c, 5)[-1].startswith(reply)
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
    if stored is None:
        assert srv.received == []
    else:
        assert srv.wait_for_envelopes(1)[0].data == stored


def test_lmtp_bdat_last_gets_a_reply_per_recipient(make_server: MakeServer) -> None:
    async def handler(envelope: Envelope) -> Response | None:
        return PerRecipient([None, R.FAIL_RCPT_CMD, R.ERROR_HANDLER])

    srv = make_server(forbid_unauth_pipelining=False, lmtp=True, handler=handler)
    with srv.raw() as c:
        greet(c)
        c.send(
            b"LHLO c.test\r\nMAIL FROM:<a@b.c>\r\n"
            b"RCPT TO:<a@x.y>\r\nRCPT TO:<b@x.y>\r\nRCPT TO:<c@x.y>\r\n"
            b"BDAT 3\r\nab\rBDAT 1 LAST\r\n\n"
        )
        got = [r[:3] for r in replies(c, 9)]
        assert got == [b"250"] * 6 + [b"250", b"550", b"451"]
        assert c.cmd(b"NOOP\r\n").startswith(b"250")


def test_default_server_takes_a_pipelined_chunked_transaction(server: ServerThread) -> None:
    # As Exchange sends it: EHLO, wait, then MAIL, RCPT and the chunks in one write; then the
    # next transaction pipelined after BDAT LAST (RFC 3030 4.2), all under the default
    # pipelining check.
    with server.raw() as c:
        greet(c)
        c.cmd(b"EHLO c.test\r\n")
        c.send(OPEN[13:] + b"BDAT 3\r\nab\rBDAT 1 LAST\r\n\n" + OPEN[13:] + b"BDAT 0 LAST\r\n")
        assert [r[:3] for r in replies(c, 7)] == [b"250"] * 7
        assert c.cmd(b"QUIT\r\n").startswith(b"221")
    assert [e.data for e in server.wait_for_envelopes(2)] == [b"ab\r\n", b""]


def test_timeout_bounds_silence_inside_a_chunk_not_the_upload(make_server: MakeServer) -> None:
    # As in DATA: a slow but steady chunk upload longer than `timeout` is not cut off.
    srv = make_server(timeout=0.6)
    with srv.raw() as c:
        greet(c)
        c.cmd(b"EHLO c.test\r\n")
        c.send(OPEN[13:] + b"BDAT 10 LAST\r\n")
        for piece in (b"ab", b"cd", b"ef", b"gh", b"\r\n"):
            time.sleep(0.3)
            c.send(piece)
        got = [r[:3] for r in replies(c, 3)]
        assert got == [b"250", b"250", b"250"]
    assert srv.wait_for_envelopes(1)[0].data == b"abcdefgh\r\n"
