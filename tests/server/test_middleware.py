"""Middleware over a real server (Go TestMiddleware* in 8.1 and 8.3)."""

from __future__ import annotations

import email.utils
import logging
import smtplib
from collections.abc import Callable

import pytest

from smtpx import Envelope, HandlerFunc, Middleware, Response, new_response
from smtpx.middleware import (
    add_delivered_to,
    add_received_header,
    add_return_path,
    logger,
    recover,
)
from tests.server.serverthread import ServerThread

MSG = b"Subject: Test\r\nFrom: from@example.com\r\n\r\nbody\r\n"


def adder(trace: list[str], i: int) -> Middleware:
    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def handle(envelope: Envelope) -> Response | None:
            trace.append(f"pre-{i}")
            try:
                return await next_(envelope)
            finally:
                trace.append(f"post-{i}")

        return handle

    return middleware


def test_order_outermost_first(make_server: Callable[..., ServerThread]) -> None:
    trace: list[str] = []
    srv = make_server()
    srv.server.middlewares = [adder(trace, 0), adder(trace, 1), adder(trace, 2)]
    for _ in range(2):
        with srv.smtp() as client:
            client.sendmail("from@example.com", ["to@example.com"], MSG)
        assert trace == ["pre-0", "pre-1", "pre-2", "post-2", "post-1", "post-0"]
        trace.clear()


def test_early_return(make_server: Callable[..., ServerThread]) -> None:
    trace: list[str] = []

    def stop(next_: HandlerFunc) -> HandlerFunc:
        async def handle(envelope: Envelope) -> Response | None:
            trace.append("stopped")
            return new_response(550, "Stopped for no good reason", "5.7.1")

        return handle

    srv = make_server(middlewares=[adder(trace, 0), stop, adder(trace, 2)])
    with srv.smtp() as client, pytest.raises(smtplib.SMTPDataError) as err:
        client.sendmail("from@example.com", ["to@example.com"], MSG)
    assert err.value.smtp_code == 550
    assert b"Stopped for no good reason" in err.value.smtp_error
    assert trace == ["pre-0", "stopped", "post-0"]
    assert srv.received == []


def test_next_never_returns_none(make_server: Callable[..., ServerThread]) -> None:
    seen: list[Response | None] = []

    def checker(next_: HandlerFunc) -> HandlerFunc:
        async def handle(envelope: Envelope) -> Response | None:
            seen.append(await next_(envelope))
            return None

        return handle

    srv = make_server(middlewares=[checker, checker, checker])
    with srv.smtp() as client:
        client.sendmail("from@example.com", ["to@example.com"], MSG)
    assert len(seen) == 3 and all(r is not None and r.code == 250 for r in seen)
    assert len(srv.received) == 1


def test_use_appends(make_server: Callable[..., ServerThread]) -> None:
    trace: list[str] = []
    srv = make_server(middlewares=[adder(trace, 0)])
    srv.server.use(adder(trace, 1))
    with srv.smtp() as client:
        client.sendmail("from@example.com", ["to@example.com"], MSG)
    assert trace == ["pre-0", "pre-1", "post-1", "post-0"]


def test_return_path_received_delivered_to(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(
        middlewares=[add_received_header("relay.example"), add_delivered_to(), add_return_path]
    )
    with srv.smtp() as client:
        client.sendmail("from@example.com", ["to@example.com"], MSG)
    (env,) = srv.received
    headers = env.mail().headers()
    assert headers.get("Return-Path") == "<from@example.com>"
    assert headers.get("Delivered-To") == "to@example.com"
    received = headers.get("Received")
    assert received is not None
    assert "from client.test ([127.0.0.1])" in received
    assert "by relay.example with ESMTP id " + env.envelope_id in received
    assert "for <to@example.com>;" in received
    email.utils.parsedate_to_datetime(received.rsplit(";", 1)[1].strip())
    # Innermost header on top; the client's bytes follow untouched.
    assert env.data.startswith(
        b"Return-Path: <from@example.com>\r\nDelivered-To: to@example.com\r\n"
    )
    assert env.data.endswith(MSG)


def test_return_path_for_bounce(make_server: Callable[..., ServerThread]) -> None:
    srv = make_server(middlewares=[add_return_path])
    with srv.smtp() as client:
        client.sendmail("", ["postmaster@example.com"], MSG)
    assert srv.received[0].data.startswith(b"Return-Path: <>\r\n")


def test_recover_turns_exception_into_451(make_server: Callable[..., ServerThread]) -> None:
    errors: list[BaseException | None] = []

    def record(next_: HandlerFunc) -> HandlerFunc:
        async def handle(envelope: Envelope) -> Response | None:
            response = await next_(envelope)
            errors.append(envelope.error)
            return response

        return handle

    async def broken(envelope: Envelope) -> Response | None:
        raise ValueError("test panic")

    srv = make_server(handler=broken, middlewares=[record, recover])
    with srv.smtp() as client, pytest.raises(smtplib.SMTPDataError) as err:
        client.sendmail("from@example.com", ["to@example.com"], MSG)
    assert err.value.smtp_code == 451
    assert isinstance(errors[0], ValueError) and str(errors[0]) == "test panic"


def test_logger_logs_request_and_response(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("smtpx.test.mail")
    srv = make_server(middlewares=[logger(log)])
    with caplog.at_level(logging.DEBUG, logger="smtpx.test.mail"), srv.smtp() as client:
        client.sendmail("sender@example.com", ["recipient@example.com"], MSG)
    records = [r for r in caplog.records if r.name == "smtpx.test.mail"]
    assert [r.levelno for r in records] == [logging.DEBUG, logging.INFO]
    done = records[1].smtpx  # type: ignore[attr-defined]
    assert done["mail_from"] == "sender@example.com"
    assert done["rcpt_to"] == ["recipient@example.com"]
    assert done["code"] == 250 and done["helo"] == "client.test"
    assert "sender@example.com" in records[1].getMessage()
