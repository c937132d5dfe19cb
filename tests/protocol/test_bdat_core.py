"""BDAT (RFC 3030) in the sans-IO core: framing by count, cut at every byte boundary."""

from __future__ import annotations

import pytest

from smtpx import responses as R
from smtpx.protocol import NEED_DATA, Connection, Message, ProtocolConfig, State
from tests.scaling import assert_linear

CONFIG = ProtocolConfig(hostname="mx.test", max_size=100, forbid_unauth_pipelining=False)


def session(
    data: bytes, cuts: list[int], config: ProtocolConfig = CONFIG
) -> tuple[bytes, list[bytes]]:
    """Feed ``data`` cut at ``cuts``; accept every message. Returns the replies and the bodies."""
    conn = Connection(config)
    conn.greeting()
    out = [conn.data_to_send()]
    bodies: list[bytes] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        if cut == pos:
            continue  # b"" would mean EOF
        conn.receive_data(data[pos:cut])
        pos = cut
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, Message):
                bodies.append(event.data)
                conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
        out.append(conn.data_to_send())
    return b"".join(out), bodies


# A refused chunk (no transaction) whose content looks like commands, then a good transaction
# in two chunks, a refused chunk after the size limit, and a last command.
STREAM = (
    b"EHLO c.test\r\n"
    b"BDAT 24\r\nRSET\r\nQUIT\r\nNOOP\r\nQUIT\r\n"
    b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n"
    b"BDAT 7\r\nSub: 1\r"
    b"BDAT 9 LAST\r\n\n\r\nbody\r\n"
    b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n"
    b"BDAT 60\r\n" + b"x" * 58 + b"\r\n"
    b"BDAT 60\r\n" + b"y" * 58 + b"\r\n"
    b"BDAT 6 LAST\r\nQUIT\r\n"
    b"NOOP\r\n"
)
EXPECTED_CODES = ["220", "250", "503", "250", "250", "250", "250", "250", "250", "250", "552"]
EXPECTED_CODES += ["503", "250"]


def codes(out: bytes) -> list[str]:
    return [line[:3].decode() for line in out.split(b"\r\n") if line and line[3:4] == b" "]


def test_refused_and_accepted_chunks_stay_in_step_at_every_cut() -> None:
    whole, bodies = session(STREAM, [])
    assert codes(whole) == EXPECTED_CODES
    assert bodies == [b"Sub: 1\r\n\r\nbody\r\n"]
    for cut in range(1, len(STREAM)):
        out, got = session(STREAM, [cut])
        assert out == whole, cut
        assert got == bodies, cut


def test_every_pair_of_cuts_in_a_pipelined_transaction() -> None:
    data = b"EHLO c.test\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nBDAT 4\r\nab\r\nBDAT 0 LAST\r\n"
    whole, bodies = session(data, [])
    assert bodies == [b"ab\r\n"]
    for a in range(1, len(data)):
        for b in range(a, len(data), 3):
            assert session(data, [a, b]) == (whole, bodies)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"BDAT abc", b"501 5.5.4"),
        (b"BDAT \xd9\xa5", b"501 5.5.4"),  # ARABIC-INDIC DIGIT FIVE
        (b"BDAT \xc2\xb2", b"501 5.5.4"),  # SUPERSCRIPT TWO
        (b"BDAT", b"501 5.5.4"),
        (b"BDAT 5 LAST x", b"501 5.5.4"),
        (b"BDAT 5 FIRST", b"501 5.5.4"),
        (b"BDAT -5", b"501 5.5.4"),
        (b"BDAT 101", b"552 5.3.4"),
        (b"BDAT 99999999999999999999", b"552 5.3.4"),
        (b"BDAT " + b"9" * 1000, b"552 5.3.4"),
    ],
)
def test_unframeable_or_oversized_chunk_closes(command: bytes, reply: bytes) -> None:
    conn = Connection(CONFIG)
    conn.receive_data(
        b"EHLO c.test\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n" + command + b"\r\n"
    )
    while conn.next_event() is not NEED_DATA:
        pass
    assert conn.data_to_send().split(b"\r\n")[-2].startswith(reply)
    assert conn.state is State.CLOSED


def test_80000_small_chunks_cost_what_one_big_one_does() -> None:
    # Time per chunk is constant: n chunks of 4 bytes take about half of 2n chunks.
    config = ProtocolConfig(hostname="mx.test", max_size=10_000_000, forbid_unauth_pipelining=False)
    head = b"EHLO c.test\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n"

    def make(n: int) -> bytes:
        return head + b"BDAT 4\r\nab\r\n" * n + b"BDAT 0 LAST\r\n"

    def run(data: bytes) -> None:
        conn = Connection(config)
        replies = 0
        for i in range(0, len(data), 65536):
            conn.receive_data(data[i : i + 65536])
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, Message):
                    assert event.data == b"ab\r\n" * (data.count(b"BDAT") - 1)
                    conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
            replies += conn.data_to_send().count(b"\r\n250 ")
        assert conn.state is State.COMMAND

    assert_linear(make, run, n=15_000, repeats=5)


LMTP = ProtocolConfig(hostname="mx.test", lmtp=True, forbid_unauth_pipelining=False)


def lmtp_message(conn: Connection) -> Message:
    conn.receive_data(
        b"LHLO c.test\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nRCPT TO:<s@x.y>\r\n"
        b"BDAT 4 LAST\r\nab\r\n"
    )
    while not isinstance(event := conn.next_event(), Message):
        assert event is not NEED_DATA
    conn.data_to_send()
    return event


def test_lmtp_send_repeats_one_reply_or_takes_one_per_recipient() -> None:
    conn = Connection(LMTP)
    assert lmtp_message(conn).chunked
    conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
    assert codes(conn.data_to_send()) == ["250", "250"]
    lmtp_message(conn)
    conn.send([R.FAIL_RCPT_CMD, R.ERROR_HANDLER])
    assert codes(conn.data_to_send()) == ["550", "451"]


def test_lmtp_send_with_the_wrong_count_is_a_driver_error() -> None:
    from smtpx.protocol import ProtocolError  # noqa: PLC0415

    conn = Connection(LMTP)
    lmtp_message(conn)
    with pytest.raises(ProtocolError):
        conn.send([R.SUCCESS_MESSAGE_ACCEPTED])
    with pytest.raises(ProtocolError):
        Connection(CONFIG).send(R.SUCCESS_MESSAGE_ACCEPTED)


def test_dsn_and_requiretls_reach_the_message_event() -> None:
    config = ProtocolConfig(
        hostname="mx.test", dsn=True, offer_requiretls=True, forbid_unauth_pipelining=False
    )
    conn = Connection(config, tls_active=True)
    conn.receive_data(
        b"EHLO c.test\r\nMAIL FROM:<a@b.c> RET=FULL ENVID=x+2By REQUIRETLS\r\n"
        b"RCPT TO:<r@x.y> NOTIFY=NEVER\r\nRCPT TO:<s@x.y>\r\nBDAT 0 LAST\r\n"
    )
    while not isinstance(event := conn.next_event(), Message):
        assert event is not NEED_DATA
    assert (event.dsn_ret, event.dsn_envid, event.requiretls) == ("FULL", "x+y", True)
    assert [d.notify for d in event.rcpt_dsn] == [("NEVER",), None]
