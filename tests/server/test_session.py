"""End-to-end session behaviour over a real loopback socket (issue 2, Go tests 8.1)."""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Callable

import pytest

from smtpx import Envelope, Response, ResponseError, new_response, responses
from smtpx.address import Address
from smtpx.protocol import State
from tests.server.serverthread import ServerThread

MSG = (
    b"Subject: Test Email\r\nFrom: sender@example.com\r\nTo: recipient@example.com\r\n"
    b"\r\n\r\nHello, this is a test email.\r\n"
)


def test_greeting_and_ehlo(server: ServerThread) -> None:
    with server.raw() as c:
        greeting = c.reply()
        assert greeting.startswith(b"220 mx.test ESMTP")
        ehlo = c.cmd(b"EHLO client.test\r\n").decode()
        assert "250-SIZE 10485760\r\n" in ehlo
        for keyword in ("8BITMIME", "PIPELINING", "SMTPUTF8", "ENHANCEDSTATUSCODES"):
            assert keyword in ehlo
        assert "STARTTLS" not in ehlo and "XCLIENT" not in ehlo
        assert c.cmd(b"QUIT\r\n").startswith(b"221 2.0.0")
        assert c.closed()


def test_send_email_with_smtplib(server: ServerThread) -> None:
    # Go TestSendEmail: the handler sees sender, recipient and the exact bytes.
    with server.smtp() as client:
        refused = client.sendmail("sender@example.com", ["recipient@example.com"], MSG)
    assert refused == {}
    (env,) = server.received
    assert env.mail_from == Address("sender@example.com")
    assert env.rcpt_to == [Address("recipient@example.com")]
    assert env.data == MSG
    assert env.helo == "client.test" and env.esmtp
    assert env.remote_ip == "127.0.0.1"
    assert env.hostname == "mx.test"
    assert len(env.envelope_id) == 20


def test_reply_to_accepted_message_is_250(server: ServerThread) -> None:
    with server.smtp() as client:
        client.ehlo()
        client.mail("a@b.c")
        client.rcpt("r@x.y")
        code, text = client.data(b"Subject: x\r\n\r\nbody\r\n")
    assert (code, text) == (250, b"2.0.0 Message accepted")


def test_two_messages_on_one_connection_keep_helo(server: ServerThread) -> None:
    # Go TestTLSMultiple without TLS; the Go package forgot HELO after the first message.
    with server.smtp() as client:
        client.sendmail("sender@example.com", ["recipient@example.com"], MSG)
        client.rset()
        client.sendmail(
            "sender-2@example.com", ["recipient-2@example.com"], b"Subject: 2\r\n\r\nx\r\n"
        )
    first, second = server.received
    assert second.mail_from == Address("sender-2@example.com")
    assert second.helo == "client.test" and second.esmtp
    assert first.envelope_id != second.envelope_id
    assert first.connection_id == second.connection_id


def test_invalid_sender_and_recipient(server: ServerThread) -> None:
    with server.smtp() as client:
        client.ehlo()
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            client.sendmail("not-an-email", ["to@example.com"], MSG)
        assert sender.value.smtp_code == 501
        with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt:
            client.sendmail("from@example.com", ["not-an-email"], MSG)
        assert rcpt.value.recipients["not-an-email"][0] == 501
    assert server.received == []


def test_multiple_recipients(server: ServerThread) -> None:
    with server.smtp() as client:
        client.sendmail("from@example.com", ["to1@example.com", "to2@example.com"], MSG)
    (env,) = server.received
    assert [r.address for r in env.rcpt_to] == ["to1@example.com", "to2@example.com"]


def test_large_single_line_and_budget_resets(server: ServerThread) -> None:
    # Go "Large Message Body" and "... reset": 9 MiB on one line, five times on one connection.
    body = b"Lorem ipsum dolor sit amet dore " * 294_912
    msg = b"Subject: big\r\n\r\n" + body + b"\r\n"
    with server.smtp() as client:
        for _ in range(5):
            client.rset()
            client.sendmail("from@example.com", ["to@example.com"], msg)
    assert len(server.received) == 5
    assert all(e.data == msg for e in server.received)


def test_too_large_message_is_552_and_session_survives(
    make_server: Callable[..., ServerThread],
) -> None:
    srv = make_server(max_size=1024 * 1024)
    with srv.smtp() as client:
        client.ehlo()
        client.mail("from@example.com")
        client.rcpt("to@example.com")
        code, text = client.data(b"x" * (2 * 1024 * 1024))
        assert code == 552 and text.startswith(b"5.3.4")
        assert client.noop()[0] == 250
        client.sendmail("from@example.com", ["to@example.com"], b"Subject: ok\r\n\r\nsmall\r\n")
    assert len(srv.received) == 1


def test_declared_size_over_limit_is_refused_at_mail(
    make_server: Callable[..., ServerThread],
) -> None:
    srv = make_server(max_size=1000)
    with srv.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        assert c.cmd(b"MAIL FROM:<a@b.c> SIZE=5000\r\n").startswith(b"552 5.3.4")


def test_smuggling_is_rejected_and_smuggled_command_not_run(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        assert c.cmd(b"MAIL FROM:<a@b.c>\r\n").startswith(b"250")
        assert c.cmd(b"RCPT TO:<r@x.y>\r\n").startswith(b"250")
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        c.send(b"Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<evil@x.y>\r\nRCPT TO:<v@x.y>\r\n")
        c.send(b"DATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n")
        reply = c.reply()
        assert reply.startswith(b"550 5.5.2"), reply
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
    assert server.received == []


@pytest.mark.parametrize("ending", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n"])
def test_bare_line_endings_never_end_data(server: ServerThread, ending: bytes) -> None:
    with server.raw() as c:
        c.reply()
        for line in (b"EHLO c.test\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n"):
            c.cmd(line)
        assert c.cmd(b"DATA\r\n").startswith(b"354")
        c.send(b"Subject: x\r\n\r\nbody" + ending + b"NOOP\r\n")
        c.send(b"tail\r\n.\r\n")
        assert c.reply().startswith(b"550 5.5.2")
    assert server.received == []


def test_normalize_option_stores_crlf(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(normalize_line_endings=True)
    with srv.raw() as c:
        c.reply()
        for line in (b"EHLO c.test\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<r@x.y>\r\n"):
            c.cmd(line)
        c.cmd(b"DATA\r\n")
        assert c.cmd(b"Subject: x\n\nbody\n.\r\nmore\r\n.\r\n").startswith(b"250")
    assert srv.received[0].data == b"Subject: x\r\n\r\nbody\r\n.\r\nmore\r\n"


def test_dot_stuffing(server: ServerThread) -> None:
    with server.smtp() as client:
        client.sendmail("a@b.c", ["r@x.y"], b"Subject: d\r\n\r\n.leading\r\n..two\r\n.\r\nend\r\n")
    # smtplib stuffed the dots; the server removed exactly one per line.
    assert server.received[0].data == b"Subject: d\r\n\r\n.leading\r\n..two\r\n.\r\nend\r\n"


def test_pipelined_commands_after_final_dot(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        c.send(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n")
        assert [c.reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        c.send(b"one\r\n.\r\nMAIL FROM:<b@b.c>\r\nRCPT TO:<s@x.y>\r\nDATA\r\n")
        assert [c.reply()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
        c.send(b"two\r\n.\r\nQUIT\r\n")
        assert [c.reply()[:3] for _ in range(2)] == [b"250", b"221"]
    assert [e.data for e in server.received] == [b"one\r\n", b"two\r\n"]


def test_empty_message(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        for line in (b"EHLO c.test\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<postmaster>\r\n"):
            assert c.cmd(line).startswith(b"250")
        c.cmd(b"DATA\r\n")
        assert c.cmd(b".\r\n").startswith(b"250")
    (env,) = server.received
    assert (
        env.data == b"" and env.mail_from == Address("") and env.rcpt_to == [Address("postmaster")]
    )


def test_command_replies(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        assert c.cmd(b"MAIL FROM:<a@b.c>\r\n").startswith(b"503 5.5.1")
        assert c.cmd(b"HELO\r\n").startswith(b"501")
        assert c.cmd(b"HELO c.test\r\n") == b"250 mx.test\r\n"
        assert c.cmd(b"NOOP\r\n") == b"250 2.0.0 OK\r\n"
        assert c.cmd(b"NOOPX\r\n").startswith(b"500 5.5.1")
        assert c.cmd(b"RSET\r\n").startswith(b"250")
        assert c.cmd(b"VRFY someone\r\n").startswith(b"252")
        assert c.cmd(b"EXPN list\r\n").startswith(b"502")
        assert c.cmd(b"HELP\r\n").startswith(b"214")
        assert c.cmd(b"RCPT TO:<r@x.y>\r\n").startswith(b"503")
        assert c.cmd(b"DATA\r\n").startswith(b"503")
        assert c.cmd(b"NOOP " + b"x" * 3000 + b"\r\n").startswith(b"500 5.5.2")
        assert c.cmd(b"NOOP\r\n").startswith(b"250")


def test_too_many_unrecognized_commands(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(max_unrecognized_commands=3)
    with srv.raw() as c:
        c.reply()
        assert c.cmd(b"FOO\r\n").startswith(b"500")
        assert c.cmd(b"BAR\r\n").startswith(b"500")
        assert c.cmd(b"BAZ\r\n").startswith(b"421")
        assert c.closed()


def test_recipient_limit(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(max_recipients=2)
    with srv.smtp() as client:
        client.ehlo()
        client.mail("a@b.c")
        assert client.rcpt("r1@x.y")[0] == 250
        assert client.rcpt("r2@x.y")[0] == 250
        code, text = client.rcpt("r3@x.y")
        assert (code, text[:5]) == (452, b"4.5.3")


def test_never_ending_line_does_not_grow_memory(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        for _ in range(50):
            c.send(b"A" * 100_000)  # 5 MB without a line end
        assert c.cmd(b"\r\n").startswith(b"500 5.5.2")
        assert c.cmd(b"NOOP\r\n").startswith(b"250")
        conn = next(iter(server.server._sessions)).conn
        assert conn is not None and len(conn._buf) < 2048


def test_handler_replies(make_server: Callable[..., ServerThread]) -> None:
    async def handler(envelope: Envelope) -> Response | None:
        subject = envelope.data.split(b"\r\n", 1)[0]
        if subject == b"Subject: reject":
            return new_response(550, "No thanks", "5.7.1")
        if subject == b"Subject: raise-response":
            raise ResponseError(responses.FAIL_MAIL_CMD)
        if subject == b"Subject: crash":
            raise RuntimeError("handler bug")
        if subject == b"Subject: queued":
            return responses.SUCCESS_MESSAGE_QUEUED
        return None

    srv = make_server(handler=handler)
    with srv.smtp() as client:
        client.ehlo()

        def send(subject: bytes) -> tuple[int, bytes]:
            client.mail("a@b.c")
            client.rcpt("r@x.y")
            return client.data(b"Subject: " + subject + b"\r\n\r\nx\r\n")

        assert send(b"reject") == (550, b"5.7.1 No thanks")
        assert send(b"raise-response")[0] == 550
        assert send(b"crash") == (451, b"4.3.0 Requested action aborted: local error in processing")
        assert send(b"queued") == (250, b"2.0.0 OK: queued")
        assert send(b"fine") == (250, b"2.0.0 Message accepted")


def test_plain_function_handler_does_not_stall_other_clients(
    make_server: Callable[..., ServerThread],
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow_handler(envelope: Envelope) -> Response | None:
        entered.set()
        release.wait(10)
        return None

    srv = make_server(handler=slow_handler)
    result: list[tuple[int, bytes]] = []

    def sender() -> None:
        with srv.smtp() as client:
            client.ehlo()
            client.mail("a@b.c")
            client.rcpt("r@x.y")
            result.append(client.data(b"Subject: slow\r\n\r\nx\r\n"))

    t = threading.Thread(target=sender)
    t.start()
    assert entered.wait(10)
    # While the plain handler blocks its worker thread, another client is served at once.
    with srv.smtp() as other:
        assert other.noop()[0] == 250
    release.set()
    t.join(10)
    assert result == [(250, b"2.0.0 Message accepted")]


def test_utf8_message(server: ServerThread) -> None:
    msg = "Subject: 漢字\r\nFrom: 用户@例子.广告\r\n\r\nbody\r\n".encode()
    with server.smtp() as client:
        client.ehlo()
        client.sendmail(
            "用户@例子.广告", ["δοκιμή@παράδειγμα.δοκιμή"], msg, mail_options=["SMTPUTF8"]
        )
    (env,) = server.received
    assert env.utf8 and env.mail_from == Address("用户@例子.广告")
    assert env.mail().headers().get("Subject") == "漢字"


def test_encoded_subject_is_decoded(server: ServerThread) -> None:
    msg = b"Subject: =?UTF-8?B?VGVzdCB3aXRoIMOpIGFuZCDkuK3lj7g=?=\r\n\r\nbody\r\n"
    with server.smtp() as client:
        client.sendmail("a@b.c", ["r@x.y"], msg)
    assert server.received[0].mail().headers().get("Subject") == "Test with é and 中司"


def test_active_clients_and_state(server: ServerThread) -> None:
    assert server.server.state.value == "running"
    with server.raw() as c:
        c.reply()
        deadline = time.monotonic() + 5
        while server.server.active_clients != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.server.active_clients == 1
        c.cmd(b"QUIT\r\n")
        assert c.closed()
    deadline = time.monotonic() + 5
    while server.server.active_clients and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.server.active_clients == 0


def test_clients_snapshot_shows_states(server: ServerThread) -> None:
    with server.raw() as c:
        c.reply()
        c.cmd(b"EHLO c.test\r\n")
        c.cmd(b"MAIL FROM:<a@b.c>\r\n")
        c.cmd(b"RCPT TO:<r@x.y>\r\n")
        c.cmd(b"DATA\r\n")
        (info,) = server.server.clients()
        assert info.state is State.DATA
        assert info.helo == "c.test"
        assert info.remote_addr[0] == "127.0.0.1"
        assert not info.tls
        assert info.connection_id >= 1


def test_handlers_that_wait_get_their_replies(make_server: Callable[..., ServerThread]) -> None:
    async def handler(envelope: Envelope) -> Response | None:
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.01)  # a timer future
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        loop.call_soon(fut.set_result, envelope.data.split(b"\r\n", 1)[0].decode())
        subject = await fut  # a future resolved later
        if subject == "Subject: fail-later":
            failing: asyncio.Future[None] = loop.create_future()
            loop.call_soon(failing.set_exception, RuntimeError("late failure"))
            await failing
        return new_response(250, f"saw {subject}")

    srv = make_server(handler=handler)
    with srv.smtp() as client:
        client.ehlo()
        for subject, expected in (
            (b"ok", (250, b"2.0.0 saw Subject: ok")),
            (b"fail-later", (451, b"4.3.0 Requested action aborted: local error in processing")),
            (b"again", (250, b"2.0.0 saw Subject: again")),
        ):
            client.mail("a@b.c")
            client.rcpt("r@x.y")
            assert client.data(b"Subject: " + subject + b"\r\n\r\nx\r\n") == expected
