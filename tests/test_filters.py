"""Recipient and sender filters: Go semantics (reference 8.3) plus enhanced status codes."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from smtpx import Server
from smtpx._filters import (
    filter_recipient,
    filter_recipient_domains,
    recipient_domains_whitelist,
    sender_domains_whitelist,
)
from smtpx.address import Address
from smtpx.envelope import Envelope
from smtpx.handler import Middleware
from smtpx.responses import Response, new_response

OK = new_response(250, "OK", "2.0.0")


async def _ok(envelope: Envelope) -> Response | None:
    return OK


def run(middleware: Middleware, envelope: Envelope) -> Response | None:
    async def call() -> Response | None:
        return await middleware(_ok)(envelope)

    return asyncio.run(call())


def env(sender: str | None = "sender@example.com", *rcpts: str) -> Envelope:
    return Envelope(
        mail_from=Address(sender) if sender is not None else None,
        rcpt_to=[Address(r) for r in rcpts],
    )


def code(response: Response | None) -> str:
    assert response is not None
    return f"{response.code} {response.enhanced}"


@pytest.mark.parametrize(
    ("domains", "sender", "expected"),
    [
        ((), "sender@example.com", "250 2.0.0"),
        (("example.com",), "sender@example.com", "250 2.0.0"),
        (("example.com",), "sender@other.com", "550 5.7.1"),
        (("example.com", "other.com"), "sender@other.com", "250 2.0.0"),
        (("EXAMPLE.com.",), "sender@Example.COM", "250 2.0.0"),
        (("example.com",), "", "550 5.7.1"),  # the null sender has no domain
        (("example.com",), None, "550 5.7.1"),
    ],
)
def test_sender_domains_whitelist(
    domains: tuple[str, ...], sender: str | None, expected: str
) -> None:
    response = run(sender_domains_whitelist(*domains), env(sender, "r@x.example"))
    assert code(response) == expected
    if expected.startswith("550"):
        assert response is not None
        assert response.text == "Sender domain not allowed"


@pytest.mark.parametrize(
    ("domains", "rcpts", "expected", "kept"),
    [
        ((), ["a@example.com"], "250 2.0.0", 1),
        (("example.com",), ["a@example.com"], "250 2.0.0", 1),
        (("example.com",), ["a@other.com"], "550 5.7.1", 0),
        (("example.com",), ["a@example.com", "b@other.com"], "250 2.0.0", 1),
        (("example.com",), ["a@other.com", "b@third.com"], "550 5.7.1", 0),
        (("example.com", "other.com"), ["a@example.com", "b@other.com"], "250 2.0.0", 2),
    ],
)
def test_filter_recipient_domains(
    domains: tuple[str, ...], rcpts: list[str], expected: str, kept: int
) -> None:
    envelope = env("s@x.example", *rcpts)
    response = run(filter_recipient_domains(*domains), envelope)
    assert code(response) == expected
    assert len(envelope.rcpt_to) == kept
    if domains:
        assert all(r.domain in domains for r in envelope.rcpt_to)
    if kept == 0:
        assert response is not None
        assert response.text == "Recipient domain not allowed"


@pytest.mark.parametrize(
    ("domains", "rcpts", "expected"),
    [
        ((), ["a@example.com"], "250 2.0.0"),
        (("example.com",), ["a@example.com"], "250 2.0.0"),
        (("example.com",), ["a@other.com"], "550 5.7.1"),
        (("example.com",), ["a@example.com", "b@other.com"], "250 2.0.0"),
        (("example.com",), ["a@other.com", "b@third.com"], "550 5.7.1"),
    ],
)
def test_recipient_domains_whitelist_does_not_change_recipients(
    domains: tuple[str, ...], rcpts: list[str], expected: str
) -> None:
    envelope = env("s@x.example", *rcpts)
    assert code(run(recipient_domains_whitelist(*domains), envelope)) == expected
    assert [r.address for r in envelope.rcpt_to] == rcpts


def test_filter_recipient() -> None:
    envelope = env("s@x.example", "user1@example.com", "user2@example.com")
    assert code(run(filter_recipient(lambda a: True), envelope)) == "250 2.0.0"
    assert len(envelope.rcpt_to) == 2

    envelope = env("s@x.example", "user1@example.com", "user2@example.com")
    response = run(filter_recipient(lambda a: False), envelope)
    assert code(response) == "550 5.1.1"
    assert envelope.rcpt_to == []

    envelope = env("s@x.example", "user1@example.com", "user2@example.com")
    keep = filter_recipient(lambda a: a.address == "user1@example.com")
    assert code(run(keep, envelope)) == "250 2.0.0"
    assert envelope.rcpt_to == [Address("user1@example.com")]


def test_rejections_reach_the_client_with_enhanced_codes() -> None:
    asyncio.run(_rejections_reach_the_client())


async def _rejections_reach_the_client() -> None:
    seen: list[list[str]] = []

    async def handler(envelope: Envelope) -> Response | None:
        seen.append([r.address for r in envelope.rcpt_to])
        return None

    server = Server(
        hostname="mx.test",
        addr="127.0.0.1:0",
        handler=handler,
        middlewares=[
            sender_domains_whitelist("example.com"),
            filter_recipient_domains("example.com"),
        ],
    )
    await server.start()
    try:

        def session() -> list[tuple[int, bytes]]:
            out = []
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                for sender, rcpts in [
                    ("a@other.com", ["r@example.com"]),
                    ("a@example.com", ["r@other.com"]),
                    ("a@example.com", ["r@example.com", "s@other.com"]),
                ]:
                    try:
                        client.sendmail(sender, rcpts, b"Subject: t\r\n\r\nbody\r\n")
                        out.append((250, b""))
                    except smtplib.SMTPDataError as exc:
                        out.append((exc.smtp_code, _as_bytes(exc.smtp_error)))
            return out

        replies = await asyncio.to_thread(session)
    finally:
        await server.shutdown(5)
    assert replies == [
        (550, b"5.7.1 Sender domain not allowed"),
        (550, b"5.7.1 Recipient domain not allowed"),
        (250, b""),
    ]
    assert seen == [["r@example.com"]]


def _as_bytes(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode()
