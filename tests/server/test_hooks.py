"""Session hooks (issue 12 item 2) over real loopback sockets."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from smtpx import Address, Envelope, Response
from smtpx.hooks import (
    Params,
    SessionView,
    filter_recipient,
    filter_recipient_domains,
    sender_domains_whitelist,
)
from tests.server.serverthread import ServerThread

REFUSED = Response(550, "5.1.1", "No such user")


class Recorder:
    """Every hook, async; refuses rcpt 'nobody' and mail from 'spammer'."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def connect(self, session: SessionView) -> Response | None:
        self.calls.append(("connect", session.remote_addr[0], session.helo))
        return None

    async def helo(self, session: SessionView, name: str) -> Response | None:
        self.calls.append(("helo", name, session.helo))
        return None

    async def mail(self, session: SessionView, address: Address, params: Params) -> Response | None:
        self.calls.append(("mail", address.address, dict(params)))
        if address.local_part == "spammer":
            return Response(550, "5.7.1", "Go away")
        return None

    async def rcpt(self, session: SessionView, address: Address, params: Params) -> Response | None:
        await asyncio.sleep(0)
        self.calls.append(
            ("rcpt", address.address, session.mail_from, [r.address for r in session.rcpt_to])
        )
        return REFUSED if address.local_part == "nobody" else None

    async def data(self, envelope: Envelope) -> Response | None:
        return None


def test_every_hook_sees_the_session_and_a_refused_rcpt_keeps_the_transaction(
    make_server: Callable[..., ServerThread],
) -> None:
    handler = Recorder()
    srv = make_server(handler=handler)
    with srv.smtp() as client:
        code, _ = client.ehlo()
        assert code == 250
        assert client.mail("a@example.org", ["SIZE=10"]) == (250, b"2.1.0 OK")
        assert client.rcpt("nobody@example.org")[0] == 550
        assert client.rcpt("b@example.org")[0] == 250
        assert client.data(b"Subject: x\r\n\r\nhi\r\n")[0] == 250
        assert client.mail("spammer@example.org")[0] == 550
        assert client.rcpt("b@example.org")[0] == 503  # no transaction after a refused MAIL
    (envelope,) = srv.received
    assert [r.address for r in envelope.rcpt_to] == ["b@example.org"]
    assert handler.calls[0] == ("connect", "127.0.0.1", "")
    assert handler.calls[1] == ("helo", "client.test", "")
    assert handler.calls[2] == ("mail", "a@example.org", {"SIZE": "10"})
    assert handler.calls[3][:2] == ("rcpt", "nobody@example.org")
    assert handler.calls[3][2] == Address("a@example.org")
    assert handler.calls[4] == ("rcpt", "b@example.org", Address("a@example.org"), [])


def test_connect_hook_refusal_replaces_the_greeting(
    make_server: Callable[..., ServerThread],
) -> None:
    class Refuse:
        async def connect(self, session: SessionView) -> Response | None:
            return Response(554, "5.7.1", "Not from you")

    srv = make_server(hooks=[Refuse()])
    with srv.raw() as raw:
        assert raw.reply() == b"554 5.7.1 Not from you\r\n"
        assert raw.closed()


def test_helo_hook_refusal_leaves_no_helo(make_server: Callable[..., ServerThread]) -> None:
    class NoLocalhost:
        def helo(self, session: SessionView, name: str) -> Response | None:  # plain: a thread
            assert threading.current_thread() is not threading.main_thread()
            return Response(550, "5.7.1", "Bad HELO") if name == "localhost" else None

    srv = make_server(hooks=[NoLocalhost()])
    with srv.raw() as raw:
        raw.reply()
        assert raw.cmd(b"EHLO localhost\r\n") == b"550 5.7.1 Bad HELO\r\n"
        assert raw.cmd(b"MAIL FROM:<a@b.example>\r\n").startswith(b"503 5.5.1")
        assert raw.cmd(b"EHLO client.test\r\n").startswith(b"250-")


def test_fifty_pipelined_rcpts_with_random_async_hooks_get_replies_in_order(
    make_server: Callable[..., ServerThread],
) -> None:
    rng = random.Random(12)
    seen: list[str] = []

    class Slow:
        async def rcpt(
            self, session: SessionView, address: Address, params: Params
        ) -> Response | None:
            await asyncio.sleep(rng.random() * 0.01)
            seen.append(address.address)
            number = int(address.local_part[1:])
            return Response(550, "5.1.1", f"no r{number}") if number % 3 == 0 else None

    srv = make_server(hooks=[Slow()], max_recipients=100, max_errors=0)
    with srv.raw() as raw:
        raw.reply()
        raw.cmd(b"EHLO client.test\r\n")
        batch = b"MAIL FROM:<a@example.org>\r\n" + b"".join(
            b"RCPT TO:<r%d@example.org>\r\n" % i for i in range(50)
        )
        raw.send(batch)
        assert raw.reply().startswith(b"250 2.1.0")
        for i in range(50):
            expected = b"550 5.1.1 no r%d\r\n" % i if i % 3 == 0 else b"250 2.1.5 OK\r\n"
            assert raw.reply() == expected
        assert raw.cmd(b"DATA\r\n").startswith(b"354")
        assert raw.cmd(b"x\r\n.\r\n").startswith(b"250")
    assert seen == [f"r{i}@example.org" for i in range(50)]
    assert len(srv.received[0].rcpt_to) == 50 - 17


class Broken:
    def __init__(self, how: str) -> None:
        self.how = how

    async def rcpt(self, session: SessionView, address: Address, params: Params) -> Any:
        if self.how == "raise":
            raise RuntimeError("boom")
        return "250 OK"  # the aiosmtpd convention, not a Response


@pytest.mark.parametrize("how", ["raise", "string"])
def test_a_hook_that_raises_or_returns_junk_gets_451_and_is_logged(
    make_server: Callable[..., ServerThread], how: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv = make_server(hooks=[Broken(how)])
    with caplog.at_level(logging.ERROR, logger="smtpx"), srv.smtp() as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.org") == (
            451,
            b"4.3.0 Requested action aborted: local error in processing",
        )
        assert client.noop()[0] == 250  # the session goes on
    text = caplog.text
    assert "Broken.rcpt" in text
    assert ("boom" in text) if how == "raise" else ("returned str '250 OK'" in text)


def test_hook_forms_of_the_go_filters(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(
        hooks=[
            sender_domains_whitelist("example.org"),
            filter_recipient_domains("Example.COM"),
            filter_recipient(lambda a: not a.local_part.startswith("x")),
        ]
    )
    with srv.smtp() as client:
        client.ehlo()
        assert client.mail("a@other.example")[0] == 550
        assert client.mail("a@example.org")[0] == 250
        assert client.rcpt("b@example.com")[0] == 250
        assert client.rcpt("b@sub.example.com") == (550, b"5.7.1 Recipient domain not allowed")
        assert client.rcpt("xb@example.com") == (550, b"5.1.1 Filtered recipient")
        assert client.rcpt("postmaster")[0] == 250
        assert client.data(b"hi\r\n")[0] == 250


def test_middleware_still_wraps_data_only(make_server: Callable[..., ServerThread]) -> None:
    seen: list[str] = []

    def middleware(next_: Any) -> Any:
        async def wrapped(envelope: Envelope) -> Response | None:
            seen.append("data")
            result: Response | None = await next_(envelope)
            return result

        return wrapped

    srv = make_server(handler=Recorder(), middlewares=[middleware])
    with srv.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], b"hi\r\n")
    assert seen == ["data"]


def test_connect_hook_sees_the_client_proxy_reported(
    make_server: Callable[..., ServerThread],
) -> None:
    seen: list[tuple[str, int]] = []

    class Look:
        async def connect(self, session: SessionView) -> Response | None:
            seen.append(session.remote_addr)
            return None

    srv = make_server(hooks=[Look()], proxy_on=True)
    with srv.raw() as raw:
        raw.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n")
        assert raw.reply().startswith(b"220 ")
    assert seen == [("192.0.2.7", 40000)]


def test_a_slow_hook_does_not_hold_up_other_clients(
    make_server: Callable[..., ServerThread],
) -> None:
    release = asyncio.Event()

    class Wait:
        async def rcpt(self, session: SessionView, address: Address, params: Params) -> None:
            if address.local_part == "slow":
                await release.wait()

    srv = make_server(hooks=[Wait()])
    with srv.raw() as slow, srv.smtp() as fast:
        slow.reply()
        slow.cmd(b"EHLO client.test\r\n")
        slow.cmd(b"MAIL FROM:<a@example.org>\r\n")
        slow.send(b"RCPT TO:<slow@example.org>\r\n")
        assert fast.sendmail("a@example.org", ["b@example.org"], b"hi\r\n") == {}
        srv.loop.call_soon_threadsafe(release.set)
        assert slow.reply().startswith(b"250 2.1.5")
