"""Random input against the protocol core (STYLE 2.11, h11's fuzzing): replies only, no bugs.

The input mixes command fragments (verbs, parameters, paths, CRLF, dots, NUL, 8-bit bytes)
with random bytes and cuts the stream into random chunks, or sends it line by line as a client
that waits for each reply does, so that the command parser, the DATA reader and BDAT chunks
(RFC 3030: pipelined, refused, cut anywhere) see it, with and without TLS, XCLIENT, LMTP (LHLO,
one reply per recipient), DSN and the pipelining check. For every example:

- every write the core asks for is whole reply lines, each CRLF-terminated and well formed
  (three-digit code 2xx..5xx, then SP, "-" or nothing; a "-" line is followed by a line of the
  same code; the last reply of a write is complete);
- the core's last-resort guard never fires (it would hide a bug as a 451 reply);
- unparsed input never grows past one command line, however the input is cut.

``test_fuzz_reaches_the_command_parser_and_data`` measures how often each part is reached.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smtpx import responses as R
from smtpx.protocol import (
    NEED_DATA,
    CloseConnection,
    Connection,
    ConnectionClosed,
    Message,
    ProtocolConfig,
    StartTLS,
    State,
)

FRAGMENTS = [
    b"EHLO a.b\r\n",
    b"HELO x.y\r\n",
    b"MAIL FROM:<a@b.c>\r\n",
    b"MAIL FROM:<>",
    b"\r\nMAIL FROM:<a@b.c>",
    b"\r\nRSET\r\nMAIL FROM:<a@b.c>",
    b"RCPT TO:<r@x.y>\r\n",
    b"RCPT TO:<postmaster>",
    b"DATA\r\n",
    b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"VRFY x",
    b"HELP",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"XCLIENT ADDR=1.2.3.4 PROTO=ESMTP\r\n",
    b"XCLIENT HELO=a.b NAME=[UNAVAILABLE] PORT=25",
    b"XCLIENT ADDR=fe80::1%25+0D+0A",
    b"EXPN",
    b"BDAT 10",
    b"BDAT 3\r\nabc",
    b"BDAT 0 LAST\r\n",
    b"BDAT 4 LAST\r\na\r\nb",
    b"BDAT 2\r\n\r",
    b"BDAT 99999999999999999999\r\n",
    b"BDAT \xd9\xa5\r\n",
    b"LHLO a.b\r\n",
    b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nBDAT 5\r\n",
    b"MAIL",
    b"RCPT",
    b" SIZE=100",
    b" SIZE=\xc2\xb2",
    b" BODY=8BITMIME",
    b" SMTPUTF8",
    b" FOO=bar",
    "<δ@例子.广告>".encode(),
    b"<@r.s:a@b.c>",
    b"[IPv6:fe80::1%x]",
    b"[192.0.2.1]",
    b'"q u"@x.y',
    b"\r\n",
    b"\r\n.\r\n",
    b"\r\n..",
    b".\r\n",
    b".",
    b"\r",
    b"\n",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b" ",
    b":",
    b"<",
    b">",
    b"=",
    b"+",
    b"x" * 70,
]

# Most pieces are command lines or dictionary pieces, some open a transaction or end a message;
# half the streams open with a greeting, so that DATA is reached and left; the rest start anyhow.
# Whole command lines: a verb, a few parameters (known or random), a line end (or none).
VERBS = [
    b"EHLO",
    b"HELO",
    b"MAIL FROM:<a@b.c>",
    b"RSET\r\nMAIL FROM:<a@b.c>",
    b"MAIL FROM:<>",
    b"MAIL FROM:",
    b"RCPT TO:<r@x.y>",
    b"RCPT TO:",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"VRFY",
    b"XCLIENT",
    b"STARTTLS",
    b"QUIT",
    b"mail from:<A@B.C>",
    b"LHLO",
    b"BDAT 5",
    b"BDAT 1 LAST",
    b"BDAT 0",
    b"BDAT 0 LAST",
    b"BDAT",
    b"BDAT 400",
    b"bdat 2 last",
]
PARAMS = [
    b" SIZE=100",
    b" SIZE=99999999999999999999",
    b" SIZE=\xc2\xb2",
    b" SIZE=",
    b" BODY=8BITMIME",
    b" BODY=BINARYMIME",
    b" SMTPUTF8",
    b" SMTPUTF8=1",
    b" a.b",
    b" [IPv6:fe80::1%x]",
    b" [IPv6:2001:db8::1]",
    " caf\u00e9.test".encode(),
    " a\u202eb".encode(),
    b" \x0b",
    b" ADDR=1.2.3.4",
    b" ADDR=fe80::1%25x",
    b" PORT=\xc2\xb2",
    b" PORT=25",
    b" HELO=x+0D+0Ay",
    b" HELO=a.b",
    b" NAME=[TEMPUNAVAIL]",
    b" PROTO=ESMTP",
    b" LOGIN=+",
    b" RET=FULL",
    b" RET=hdrs",
    b" ENVID=a+0D+0Ab",
    b" ENVID=x+41",
    b" NOTIFY=SUCCESS,DELAY",
    b" NOTIFY=NEVER,SUCCESS",
    b" NOTIFY=",
    b" ORCPT=rfc822;a+40b",
    " ORCPT=utf-8;\u00e9\\x{E9}".encode(),
    b" REQUIRETLS",
    b" LAST",
]
_line = st.builds(
    lambda verb, params, end: verb + b"".join(params) + end,
    st.sampled_from(VERBS),
    st.lists(
        st.one_of(st.sampled_from(PARAMS), st.sampled_from(PARAMS), st.binary(max_size=6)),
        max_size=3,
    ),
    st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b""]),
)
_known = st.sampled_from(FRAGMENTS)
_transaction = st.just(b"\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
_chunked = st.sampled_from(
    [
        b"\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nRCPT TO:<s@x.y>\r\nBDAT 7\r\n",
        b"\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nBDAT 3 LAST\r\n",
    ]
)
_end = st.just(b"\r\n.\r\n")
fragment = st.one_of(
    _line, _line, _line, _known, _transaction, _transaction, _chunked, _end, st.binary(max_size=12)
)
streams = st.builds(
    lambda greet, pieces: greet + b"".join(pieces),
    st.sampled_from([b"", b"EHLO a.b\r\n", b"HELO a.b\r\n", b"EHLO a.b\r\n"]),
    st.lists(fragment, min_size=8, max_size=80),
)

# A reply line: code, then SP text, "-" text, or nothing; never a CR or LF inside.
REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -][^\r\n]*)?")


@dataclass
class Seen:
    commands: int = 0  # command lines parsed
    data: bool = False  # a DATA command was accepted (354): the reader gets what follows
    after_data: int = 0  # command lines parsed after a DATA phase ended
    bdat: bool = False  # a BDAT chunk was accepted for reading (accepted or refused)
    messages: int = 0  # Message events (DATA or BDAT LAST)


class Counting(Connection):
    """A Connection that counts the command lines it parses (for the coverage figures)."""

    def __init__(self, config: ProtocolConfig, **kw: bool | None) -> None:
        super().__init__(config, **kw)  # type: ignore[arg-type]
        self.seen = Seen()

    def _command(self, raw: bytes) -> object:  # type: ignore[override]
        self.seen.commands += 1
        if self.seen.data:  # a command line is parsed only once the DATA phase has ended
            self.seen.after_data += 1
        event = super()._command(raw)
        if self.state is State.DATA:
            self.seen.data = True
        if self.state is State.BDAT:
            self.seen.bdat = True
        return event


def check_write(out: bytes) -> None:
    """One write of the core: complete, CRLF-terminated, well-formed replies."""
    if not out:
        return
    assert out.endswith(b"\r\n"), out[-80:]
    pending: bytes | None = None
    for line in out[:-2].split(b"\r\n"):
        m = REPLY_LINE.fullmatch(line)
        assert m is not None, line
        if pending is not None:
            assert m.group(1) == pending, line  # RFC 5321 4.2.1: one code per reply
        pending = m.group(1) if line[3:4] == b"-" else None
    assert pending is None, "a multiline reply is cut short"


def cut(stream: bytes, points: list[int], per_line: bool) -> list[bytes]:
    if per_line:
        # A client that waits: each line is a write of its own.
        return [line for line in stream.splitlines(keepends=True) if line]
    bounds = sorted({min(p, len(stream)) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def run(
    stream: bytes,
    points: list[int],
    per_line: bool,
    tls: int,
    xclient: bool | None,
    forbid: bool,
    line_max: int,
    lmtp: bool = False,
    dsn: bool = False,
) -> Seen:
    config = ProtocolConfig(
        lmtp=lmtp,
        dsn=dsn,
        offer_requiretls=tls > 0,
        hostname="mx.test",
        max_size=300,
        tls_available=tls > 0,
        forbid_unauth_pipelining=forbid,
        max_line_length=line_max,
        # The strict limits end most random sessions early; the loose ones let them run on.
        max_unrecognized_commands=5 if forbid else 1000,
        max_errors=20 if forbid else 0,
    )
    if lmtp and stream[:10] in (b"EHLO a.b\r\n", b"HELO a.b\r\n"):
        stream = b"LHLO" + stream[4:]  # an LMTP server greets only LHLO (RFC 2033 4.1)
    conn = Counting(config, tls_active=tls == 2, xclient=xclient)
    conn.greeting()
    check_write(conn.data_to_send())
    for chunk in [*cut(stream, points, per_line), b""]:
        conn.receive_data(chunk)
        for _ in range(10_000):
            event = conn.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Message):
                conn.seen.messages += 1
                conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
            elif isinstance(event, StartTLS):
                conn.tls_established()
            elif isinstance(event, CloseConnection | ConnectionClosed):
                assert conn.state is State.CLOSED
        else:
            raise AssertionError("next_event() never asked for data")
        # Unparsed input: at most one partial command line (or nothing, in DATA).
        if conn.state in (State.COMMAND, State.DATA, State.BDAT):
            assert conn.buffered <= line_max + 2, conn.buffered
        assert len(conn._buf) <= 65536 + len(chunk) + line_max + 2
        check_write(conn.data_to_send())
    assert conn._internal_errors == 0, "the last-resort guard fired: a bug"
    return conn.seen


examples = {
    "stream": streams,
    "points": st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    "per_line": st.booleans(),
    "tls": st.integers(min_value=0, max_value=2),
    "xclient": st.sampled_from([None, False, True]),
    "forbid": st.booleans(),
    "line_max": st.sampled_from([16, 64, 1024]),
    "lmtp": st.sampled_from([False, False, True]),
    "dsn": st.booleans(),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**examples)
# Issue 9 item 5, found by hand; random search reaches it only now and then.
@example(
    b"EHLO a.b\r\nMAIL FROM:<a@b.c> SIZE=\xc2\xb2\r\n", [], True, 0, None, True, 1024, False, False
)
def test_random_input_only_produces_well_formed_replies(
    stream: bytes,
    points: list[int],
    per_line: bool,
    tls: int,
    xclient: bool | None,
    forbid: bool,
    line_max: int,
    lmtp: bool,
    dsn: bool,
) -> None:
    run(stream, points, per_line, tls, xclient, forbid, line_max, lmtp, dsn)


def test_fuzz_reaches_the_command_parser_and_data() -> None:
    # The old test sent EHLO..DATA first: every random byte went to the DATA reader and no
    # command line was ever fuzzed. Count what this generator reaches.
    seen: list[Seen] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(**examples)
    def sample(
        stream: bytes,
        points: list[int],
        per_line: bool,
        tls: int,
        xclient: bool | None,
        forbid: bool,
        line_max: int,
        lmtp: bool,
        dsn: bool,
    ) -> None:
        seen.append(run(stream, points, per_line, tls, xclient, forbid, line_max, lmtp, dsn))

    sample()
    n = len(seen)
    parsed = sum(s.commands >= 3 for s in seen) / n
    data = sum(s.data for s in seen) / n
    after = sum(s.after_data > 0 for s in seen) / n
    bdat = sum(s.bdat for s in seen) / n
    messages = sum(s.messages > 0 for s in seen) / n
    print(
        f"{n} examples: >=3 command lines {parsed:.0%}, DATA {data:.0%}, after DATA {after:.0%},"
        f" BDAT chunk {bdat:.0%}, a message {messages:.0%}"
    )
    assert parsed > 0.5
    assert bdat > 0.15
    assert messages > 0.05
    # BDAT chunks and LMTP sessions share the examples now, so fewer reach DATA.
    assert data > 0.08
    assert after > 0.05


def test_check_write_catches_bad_replies() -> None:
    for bad in [b"250 ok", b"250-a\r\n", b"250-a\r\n251 b\r\n", b"25 x\r\n", b"250 a\rb\r\n"]:
        try:
            check_write(bad)
        except AssertionError:
            continue
        raise AssertionError(f"accepted {bad!r}")
    check_write(b"250-a\r\n250 b\r\n220 mx.test ESMTP\r\n354\r\n")
