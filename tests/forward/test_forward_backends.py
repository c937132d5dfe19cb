"""smtpx.forward against smtpx itself and scripted backends on loopback.

Every test checks what the client saw against what the backend got: each message the client
saw accepted arrived exactly once, and none it saw refused did.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smtpx import Envelope, PerRecipient, Response
from smtpx import responses as R
from smtpx.address import Address
from smtpx.auth import AuthFile, AuthThrottle, FileAuthenticator, hash_password
from smtpx.forward import Forward, parse_backend_url
from smtpx.hooks import Params, SessionView
from tests.edges.edgeutil import TLSMaterial, free_port, wait_until
from tests.forward.fakes import Conn, FakeBackend, Script
from tests.server.serverthread import ServerThread

MakeServer = Callable[..., ServerThread]
MakeFake = Callable[[Script], FakeBackend]
FAILED = (451, b"4.4.1")


def body(subject: str) -> bytes:
    return f"Subject: {subject}\r\nFrom: a@c.test\r\n\r\nhello\r\n.leading dot\r\n".encode()


def front(make_server: MakeServer, url: str, **options: object) -> ServerThread:
    fwd_options = {
        k: options.pop(k) for k in ("timeout", "pool_size", "idle_timeout") if k in options
    }
    return make_server(handler=Forward(url, **fwd_options), **options)  # type: ignore[arg-type]


def send(
    srv: ServerThread, rcpts: list[str], subject: str, *, mail_opts: tuple[str, ...] = ()
) -> tuple[tuple[int, bytes], list[tuple[int, bytes]], tuple[int, bytes] | None]:
    """MAIL, each RCPT, DATA; the client's replies (DATA's None when no RCPT was taken)."""
    with srv.smtp() as c:
        c.ehlo()
        mail = c.mail("a@c.test", list(mail_opts))
        replies = [c.rcpt(r) for r in rcpts]
        data = None
        if mail[0] == 250 and any(code == 250 for code, _ in replies):
            data = c.data(body(subject))
        return mail, replies, data


def subjects(envelopes: list[Envelope]) -> list[str]:
    out = []
    for e in envelopes:
        start = e.data.index(b"Subject: ") + 9
        out.append(e.data[start : e.data.index(b"\r\n", start)].decode())
    return out


def classify(reply: tuple[int, bytes] | None) -> tuple[int, bytes] | None:
    return None if reply is None else (reply[0], reply[1].split(b" ")[0])


class RefuseSome:
    """A backend's hooks and handler: refuse bad@ at RCPT, and subject 'spam' after DATA."""

    async def rcpt(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        return R.FAIL_RCPT_CMD if address.address.startswith("bad@") else None

    async def data(self, envelope: Envelope) -> Response | None:
        if b"Subject: spam" in envelope.data:
            return Response(554, "5.7.1", "spam refused")
        return None


def test_smtp_backend_relays_and_reuses_connections(make_server: MakeServer) -> None:
    backend = make_server()
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}")
    for i in range(3):
        mail, rcpts, data = send(srv, ["x@d.test", "y@d.test"], f"m{i}")
        assert mail[0] == 250 and [r[0] for r in rcpts] == [250, 250]
        assert data is not None and data[0] == 250
    got = backend.wait_for_envelopes(3)
    assert subjects(got) == ["m0", "m1", "m2"]
    for env in got:
        assert [r.address for r in env.rcpt_to] == ["x@d.test", "y@d.test"]
        assert b"\r\n.leading dot\r\n" in env.data  # stuffed on the way, unstuffed there
    # One pooled connection carried the three transactions.
    assert len({e.connection_id for e in got}) == 1


def test_backend_refusals_are_the_clients(make_server: MakeServer) -> None:
    backend = make_server(handler=RefuseSome())
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}")
    _, rcpts, data = send(srv, ["bad@d.test", "ok@d.test"], "ham")
    assert [classify(r) for r in rcpts] == [(550, b"5.1.1"), (250, b"2.1.5")]
    assert data is not None and data[0] == 250
    _, _, data = send(srv, ["ok@d.test"], "spam")
    assert classify(data) == (554, b"5.7.1") and b"spam refused" in data[1]  # type: ignore[index]
    _mail, rcpts, data = send(srv, ["bad@d.test"], "never")
    assert rcpts[0][0] == 550 and data is None
    time.sleep(0.3)
    got = backend.envelopes
    assert subjects(got) == ["ham"]
    assert [r.address for r in got[0].rcpt_to] == ["ok@d.test"]


def test_backend_down_is_451_441(make_server: MakeServer) -> None:
    srv = front(make_server, f"smtp://127.0.0.1:{free_port()}", timeout=2)
    mail, _, data = send(srv, ["x@d.test"], "lost")
    assert classify(mail) == FAILED and data is None


async def hang_after_354(conn: Conn) -> None:
    await conn.dialogue({b"DATA": b"354 go\r\n", b".": b""})
    await conn.reader.read()  # never answers the message


async def dribble_after_354(conn: Conn) -> None:
    await conn.say(b"220 fake\r\n")
    while True:
        raw = await conn.line()
        if not raw:
            return
        verb = raw[:4]
        if verb == b"EHLO":
            await conn.say(b"250-fake\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            await conn.say(b"354 go\r\n")
            await conn.message()
            for byte in b"250 2.0.0 slowly but surely, one byte at a time\r\n":
                await conn.say(bytes([byte]))
                await __import__("asyncio").sleep(0.1)
            return
        else:
            await conn.say(b"250 ok\r\n")


async def hang_at_mail(conn: Conn) -> None:
    await conn.say(b"220 fake\r\n")
    await conn.line()
    await conn.say(b"250 fake\r\n")
    await conn.reader.read()


@pytest.mark.parametrize("script", [hang_after_354, dribble_after_354, hang_at_mail])
def test_backend_that_hangs_or_dribbles_is_451_441(
    make_server: MakeServer, fake: MakeFake, script: Script
) -> None:
    backend = fake(script)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", timeout=1.0)
    started = time.monotonic()
    mail, _, data = send(srv, ["x@d.test"], "slow")
    reply = mail if script is hang_at_mail else data
    assert classify(reply) == FAILED
    assert time.monotonic() - started < 4.5  # the dribble takes 5 s in all


@pytest.mark.parametrize(
    "reply",
    [
        b"250 2.0.0 ok\x1b[31m red\r\n",  # a control character
        b"250-2.0.0 ok\r\n550 5.0.0 mixed\r\n",  # mixed codes
        b"250-x\r\n" * 50 + b"250 x\r\n",  # too many lines
        b"25O oops\r\n",  # not a code
        b"250 " + b"x" * 9000 + b"\r\n",  # over the size bound
        b"250 ok\n",  # no CRLF
    ],
)
def test_malformed_backend_reply_is_451_441(
    make_server: MakeServer, fake: MakeFake, reply: bytes
) -> None:
    async def script(conn: Conn) -> None:
        await conn.dialogue({b"DATA": b"354 go\r\n", b".": reply})

    backend = fake(script)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", timeout=2.0)
    _, _, data = send(srv, ["x@d.test"], "bad reply")
    assert classify(data) == FAILED


def test_lmtp_both_sides_per_recipient(make_server: MakeServer) -> None:
    async def handler(envelope: Envelope) -> Response:
        return PerRecipient(
            Response(452, "4.2.2", "mailbox full") if r.address.startswith("full@") else None
            for r in envelope.rcpt_to
        )

    class Store(RefuseSome):
        async def data(self, envelope: Envelope) -> Response | None:
            return await handler(envelope)

    backend = make_server(lmtp=True, handler=Store())
    srv = front(make_server, f"lmtp://127.0.0.1:{backend.port}", lmtp=True)
    with srv.raw() as c:
        c.reply()
        assert c.cmd(b"LHLO c.test\r\n").startswith(b"250")
        assert c.cmd(b"MAIL FROM:<a@c.test>\r\n").startswith(b"250")
        assert c.cmd(b"RCPT TO:<ok@d.test>\r\n").startswith(b"250")
        assert c.cmd(b"RCPT TO:<bad@d.test>\r\n").startswith(b"550 5.1.1")
        assert c.cmd(b"RCPT TO:<full@d.test>\r\n").startswith(b"250")
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        c.send(body("lmtp") + b".\r\n")
        first, second = c.reply(), c.reply()
        assert first.startswith(b"250 2.0.0")
        assert second.startswith(b"452 4.2.2 mailbox full")
    (env,) = backend.wait_for_envelopes(1)
    assert [r.address for r in env.rcpt_to] == ["ok@d.test", "full@d.test"]


def test_lmtp_missing_reply_fails_the_rest_and_drops_the_connection(
    make_server: MakeServer, fake: MakeFake
) -> None:
    async def one_reply_short(conn: Conn) -> None:
        await conn.dialogue({b"DATA": b"354 go\r\n", b".": b"250 2.0.0 first\r\n"}, lmtp=False)

    backend = fake(one_reply_short)
    srv = front(make_server, f"lmtp://127.0.0.1:{backend.port}", lmtp=True, timeout=1.0)
    with srv.raw() as c:
        c.reply()
        c.cmd(b"LHLO c.test\r\n")
        c.cmd(b"MAIL FROM:<a@c.test>\r\n")
        c.cmd(b"RCPT TO:<a@d.test>\r\n")
        c.cmd(b"RCPT TO:<b@d.test>\r\n")
        c.cmd(b"DATA\r\n")
        c.send(body("short") + b".\r\n")
        assert c.reply().startswith(b"250 2.0.0 first")
        assert c.reply().startswith(b"451 4.4.1")
        # The next transaction takes a fresh connection: the broken one is never reused.
        assert c.cmd(b"MAIL FROM:<a@c.test>\r\n").startswith(b"250")
    assert wait_until(lambda: len(backend.conns) == 2, 5)


def test_lmtp_backend_smtp_front_partial_is_a_failure(make_server: MakeServer) -> None:
    async def handler(envelope: Envelope) -> Response:
        return PerRecipient(
            Response(452, "4.2.2", "full") if r.address.startswith("full@") else None
            for r in envelope.rcpt_to
        )

    backend = make_server(lmtp=True, handler=handler)
    srv = front(make_server, f"lmtp://127.0.0.1:{backend.port}")
    _, _, data = send(srv, ["ok@d.test", "ok2@d.test"], "all")
    assert data is not None and data[0] == 250
    _, _, data = send(srv, ["ok@d.test", "full@d.test"], "part")
    assert classify(data) == (452, b"4.2.2")


def test_exhausted_pool_answers_451_in_time(make_server: MakeServer) -> None:
    backend = make_server()
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", pool_size=1, timeout=1.0)
    with srv.smtp() as holder:
        holder.ehlo()
        assert holder.mail("a@c.test")[0] == 250
        started = time.monotonic()
        mail, _, _ = send(srv, ["x@d.test"], "waits")
        assert classify(mail) == FAILED
        assert time.monotonic() - started < 3
        # The loop was never blocked: the holder goes on.
        assert holder.rcpt("x@d.test")[0] == 250
        assert holder.data(body("held"))[0] == 250
    assert subjects(backend.wait_for_envelopes(1)) == ["held"]


@pytest.mark.parametrize("ending", ["rset", "quit", "drop"])
def test_transaction_without_data_gives_the_connection_back(
    make_server: MakeServer, ending: str
) -> None:
    backend = make_server()
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", pool_size=1, timeout=5.0)
    c = srv.smtp()
    c.ehlo()
    assert c.mail("a@c.test")[0] == 250
    assert c.rcpt("x@d.test")[0] == 250
    if ending == "rset":
        c.rset()
    elif ending == "quit":
        c.quit()
    else:
        c.close()  # no QUIT: the client just goes
    _mail, _rcpts, data = send(srv, ["y@d.test"], "next")
    assert data is not None and data[0] == 250
    if ending == "rset":
        c.quit()
    (env,) = backend.wait_for_envelopes(1)
    assert [r.address for r in env.rcpt_to] == ["y@d.test"]  # x@ was reset away


def test_dead_pooled_connection_is_replaced_once(make_server: MakeServer) -> None:
    backend = make_server(timeout=0.5)  # closes idle connections with 421 4.4.2
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}")
    assert send(srv, ["x@d.test"], "first")[2] is not None
    time.sleep(1.5)
    _, _, data = send(srv, ["x@d.test"], "second")
    assert data is not None and data[0] == 250
    assert subjects(backend.wait_for_envelopes(2)) == ["first", "second"]


def test_only_advertised_parameters_pass_re_encoded(make_server: MakeServer) -> None:
    with_dsn = make_server(dsn=True)
    srv = front(make_server, f"smtp://127.0.0.1:{with_dsn.port}", dsn=True)
    with srv.smtp() as c:
        c.ehlo()
        assert (
            c.mail("a@c.test", ["SIZE=100", "BODY=8bitmime", "RET=hdrs", "ENVID=id+2Bx"])[0] == 250
        )
        assert c.rcpt("x@d.test", ["NOTIFY=failure,delay", "ORCPT=rfc822;x+2By@d.test"])[0] == 250
        assert c.data(body("dsn"))[0] == 250
    (env,) = with_dsn.wait_for_envelopes(1)
    assert (env.dsn_ret, env.dsn_envid, env.body_type) == ("HDRS", "id+x", "8BITMIME")
    assert env.rcpt_dsn[0].notify == ("FAILURE", "DELAY")
    assert env.rcpt_dsn[0].orcpt is not None and env.rcpt_dsn[0].orcpt.address == "x+y@d.test"
    # A backend without DSN: the DSN parameters are left out, not refused there.
    no_dsn = make_server()
    srv2 = front(make_server, f"smtp://127.0.0.1:{no_dsn.port}", dsn=True)
    with srv2.smtp() as c:
        c.ehlo()
        assert c.mail("a@c.test", ["RET=FULL", "ENVID=abc"])[0] == 250
        assert c.rcpt("x@d.test", ["NOTIFY=NEVER"])[0] == 250
        assert c.data(body("nodsn"))[0] == 250
    (env,) = no_dsn.wait_for_envelopes(1)
    assert env.dsn_ret is None and env.dsn_envid is None


@pytest.mark.parametrize(
    "url",
    [
        "http://x:25",
        "smtp://",
        "smtp://h:99999",
        "smtp://h:25/path",
        "smtp://h:25?bogus=1",
        "lmtp://h:24?starttls=1",
        "lmtp+unix://relative/sock",
        "smtp://user@h:25",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_backend_url(url)


def test_urls() -> None:
    assert str(parse_backend_url("smtp://h")) == "smtp://h:25"
    assert str(parse_backend_url("lmtp://[::1]:2424")) == "lmtp://[::1]:2424"
    assert parse_backend_url("smtp://h:587?starttls=1").starttls
    assert parse_backend_url("lmtp+unix:///run/lmtp").path == "/run/lmtp"


def test_starttls_to_the_backend(make_server: MakeServer, tmp_path: Path) -> None:
    tls = TLSMaterial(tmp_path)
    backend = make_server(tls=tls.server_context())
    fwd = Forward(f"smtp://127.0.0.1:{backend.port}?starttls=1", tls_context=tls.client_context())
    srv = make_server(handler=fwd)
    _, _, data = send(srv, ["x@d.test"], "secret")
    assert data is not None and data[0] == 250
    (env,) = backend.wait_for_envelopes(1)
    assert env.tls is not None
    # A certificate the forwarder does not trust: the backend counts as failed.
    untrusted = make_server(handler=Forward(f"smtp://127.0.0.1:{backend.port}?starttls=1"))
    mail, _, _ = send(untrusted, ["x@d.test"], "never")
    assert classify(mail) == FAILED
    assert len(backend.envelopes) == 1


def test_no_starttls_offered_is_a_failed_backend(make_server: MakeServer) -> None:
    backend = make_server()
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}?starttls=1")
    mail, _, _ = send(srv, ["x@d.test"], "plain")
    assert classify(mail) == FAILED
    assert backend.envelopes == []


def test_only_announced_parameters_and_auth_empty_unless_authenticated(
    make_server: MakeServer, fake: MakeFake, tmp_path: Path
) -> None:
    async def with_auth(conn: Conn) -> None:
        await conn.say(b"220 fake\r\n")
        await conn.line()
        await conn.say(b"250-fake\r\n250-AUTH PLAIN\r\n250 SIZE 1000\r\n")
        while await conn.line():
            await conn.say(b"250 ok\r\n")

    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('pw', ln=10)}\n")
    auth = FileAuthenticator(AuthFile(users))
    try:
        backend = fake(with_auth)
        srv = make_server(
            handler=Forward(f"smtp://127.0.0.1:{backend.port}"),
            authenticator=auth,
            auth_allow_insecure=True,
            auth_throttle=AuthThrottle(base_delay=0.0, max_delay=0.0),
        )
        with srv.smtp() as c:
            c.ehlo()
            assert c.mail("a@c.test", ["SIZE=123", "BODY=8BITMIME", "AUTH=bob+2Bx"])[0] == 250
            c.rset()
            c.login("alice", "pw")
            assert c.mail("a@c.test", ["AUTH=alice+2Bx@c.test"])[0] == 250
        assert wait_until(lambda: len(backend.conns[0].lines) >= 4, 5)
    finally:
        auth.close()
    mails = [ln for ln in backend.conns[0].lines if ln.startswith(b"MAIL")]
    # SIZE announced: passed on; 8BITMIME not: BODY left out; AUTH=<> for a client that
    # did not authenticate, re-encoded xtext for one that did.
    assert mails == [
        b"MAIL FROM:<a@c.test> SIZE=123 AUTH=<>\r\n",
        b"MAIL FROM:<a@c.test> AUTH=alice+2Bx@c.test\r\n",
    ]


@pytest.mark.parametrize("verb", [b"MAIL", b"RCPT"])
def test_client_leaving_while_a_command_is_at_the_backend(
    make_server: MakeServer, fake: MakeFake, verb: bytes
) -> None:
    async def slow(conn: Conn) -> None:
        await conn.say(b"220 fake\r\n")
        while raw := await conn.line():
            if raw.startswith(b"EHLO"):
                await conn.say(b"250 fake\r\n")
                continue
            if raw.startswith(verb):
                await asyncio.sleep(0.5)  # the client leaves meanwhile
            if raw.startswith(b"DATA"):
                await conn.say(b"354 go\r\n")
                await conn.message()
            await conn.say(b"250 ok\r\n")

    backend = fake(slow)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", pool_size=1, timeout=5.0)
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        if verb == b"RCPT":
            assert c.cmd(b"MAIL FROM:<a@c.test>\r\n").startswith(b"250")
        c.send(verb + (b" TO:<x@d.test>\r\n" if verb == b"RCPT" else b" FROM:<a@c.test>\r\n"))
    time.sleep(0.1)
    _, _, data = send(srv, ["y@d.test"], "after")
    assert data is not None and data[0] == 250
    # The one pooled connection was reset (RSET after the slow reply) and reused.
    assert len(backend.conns) == 1
    lines = [ln.split(b" ")[0].strip() for ln in backend.conns[0].lines]
    assert lines[lines.index(verb) + 1] == b"RSET"


def test_idle_pooled_connections_are_closed(make_server: MakeServer, fake: MakeFake) -> None:
    async def plain(conn: Conn) -> None:
        await conn.dialogue({})

    backend = fake(plain)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", idle_timeout=0.5)
    _, _, data = send(srv, ["x@d.test"], "one")
    assert data is not None and data[0] == 250
    # QUIT, then the backend sees the connection end (its dialogue returns).
    assert wait_until(lambda: backend.conns[0].lines[-1:] == [b"QUIT\r\n"], 5)


def big_message(count: int = 3000) -> bytes:
    # Over three 64 KiB chunks, with lines that start with a dot on and around the edges.
    lines = [b"Subject: big", b"From: a@c.test", b""]
    lines += [(b"." if i % 7 == 0 else b"") + b"line %06d " % i + b"x" * 60 for i in range(count)]
    return b"\r\n".join(lines) + b"\r\n"


def test_big_message_by_bdat_and_by_data_arrives_intact(
    make_server: MakeServer, fake: MakeFake
) -> None:
    original = big_message()
    stuffed_for_client = original.replace(b"\r\n.", b"\r\n..")
    # smtpx announces CHUNKING: BDAT.
    by_bdat = make_server(max_size=10_000_000)
    srv = front(make_server, f"smtp://127.0.0.1:{by_bdat.port}", max_size=10_000_000)
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        c.cmd(b"MAIL FROM:<a@c.test>\r\n")
        c.cmd(b"RCPT TO:<x@d.test>\r\n")
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        assert c.cmd(stuffed_for_client + b".\r\n").startswith(b"250")
    (env,) = by_bdat.wait_for_envelopes(1)
    assert env.chunked and env.data == original
    # The fake announces no CHUNKING: DATA, dot-stuffed.
    received: list[bytes] = []

    async def record(conn: Conn) -> None:
        await conn.say(b"220 fake\r\n")
        while raw := await conn.line():
            if raw.startswith(b"DATA"):
                await conn.say(b"354 go\r\n")
                received.append(await conn.message())
            await conn.say(b"250 ok\r\n")

    backend = fake(record)
    srv2 = front(make_server, f"smtp://127.0.0.1:{backend.port}", max_size=10_000_000)
    with srv2.smtp() as client:
        assert client.sendmail("a@c.test", ["x@d.test"], original) == {}
    assert received == [stuffed_for_client]


def test_refused_bdat_chunk_is_relayed(make_server: MakeServer) -> None:
    backend = make_server(max_size=100_000)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}", max_size=10_000_000)
    with srv.smtp() as c:
        c.ehlo()
        c.mail("a@c.test")
        c.rcpt("x@d.test")
        code, text = c.data(big_message())
        assert (code, text[:5]) == (552, b"5.3.4")  # the backend's size limit
        # The connection was reset and is reused for the next message.
        assert c.sendmail("a@c.test", ["y@d.test"], body("small")) == {}
    (env,) = backend.wait_for_envelopes(1)
    assert subjects([env]) == ["small"]


def test_non_ascii_reply_text_is_relayed_as_question_marks(
    make_server: MakeServer, fake: MakeFake
) -> None:
    async def script(conn: Conn) -> None:
        await conn.dialogue({b"DATA": b"354 go\r\n", b".": "250 2.0.0 déjà vu\r\n".encode()})

    backend = fake(script)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}")
    _, _, data = send(srv, ["x@d.test"], "accents")
    assert data == (250, b"2.0.0 d?j? vu")


def test_spooled_message_is_streamed_to_the_backend(make_server: MakeServer) -> None:
    original = big_message(10_000)  # past the reader's 256 KiB, so it spools
    backend = make_server(max_size=10_000_000)
    spooled: list[bool] = []

    class Watch(Forward):
        async def data(self, envelope: Envelope) -> Response:
            spooled.append(envelope.spooled)
            return await super().data(envelope)

    srv = make_server(
        handler=Watch(f"smtp://127.0.0.1:{backend.port}"),
        max_size=10_000_000,
        spool_threshold=0,
    )
    with srv.smtp() as c:
        assert c.sendmail("a@c.test", ["x@d.test"], original) == {}
    (env,) = backend.wait_for_envelopes(1)
    assert spooled == [True]
    assert env.data == original


def test_bytes_after_the_starttls_220_are_a_failed_backend(
    make_server: MakeServer, fake: MakeFake
) -> None:
    # RFC 3207 5: whatever comes with the 220 before the handshake was not protected by it;
    # a reply hidden there (an injected "250") must never be taken for a later command's.
    async def injecting(conn: Conn) -> None:
        await conn.say(b"220 fake\r\n")
        await conn.line()
        await conn.say(b"250-fake\r\n250 STARTTLS\r\n")
        await conn.line()
        await conn.say(b"220 go ahead\r\n250 2.1.0 injected\r\n")
        await conn.reader.read()

    backend = fake(injecting)
    srv = front(make_server, f"smtp://127.0.0.1:{backend.port}?starttls=1")
    mail, _, _ = send(srv, ["x@d.test"], "never")
    assert classify(mail) == FAILED
    for conn in backend.conns:  # nothing past STARTTLS on any connection
        assert [line[:8] for line in conn.lines if line] == [b"EHLO loc", b"STARTTLS"]
