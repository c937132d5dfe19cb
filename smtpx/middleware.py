"""Middleware from the Go package: logger, recover, the trace headers and the filters.

``smtpx.authres.authentication_results`` (SPF, DKIM, DMARC) lives with the checks it runs.

A middleware takes the next handler function and returns a new one; ``Server(middlewares=[a,
b])`` runs ``a`` outermost. Headers are prepended, so the innermost middleware's header ends
up on top.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import time
from collections.abc import Callable

from . import responses as R
from ._filters import filter_recipient as filter_recipient
from ._filters import filter_recipient_domains as filter_recipient_domains
from ._filters import recipient_domains_whitelist as recipient_domains_whitelist
from ._filters import sender_domains_whitelist as sender_domains_whitelist
from .envelope import Envelope
from .handler import HandlerFunc, Middleware
from .responses import Response, ResponseError

__all__ = [
    "add_delivered_to",
    "add_received_header",
    "add_return_path",
    "filter_recipient",
    "filter_recipient_domains",
    "logger",
    "received_protocol",
    "recipient_domains_whitelist",
    "recover",
    "sender_domains_whitelist",
]

Skipper = Callable[[Envelope], bool]


def logger(log: logging.Logger | None = None, *, skip: Skipper | None = None) -> Middleware:
    """Log one line before and one after each message (Go ``middleware.Logger``).

    Args:
        log: The logger; defaults to ``logging.getLogger("smtpx.mail")``.
        skip: Return True to not log an envelope.
    """
    target = log or logging.getLogger("smtpx.mail")

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def log_message(envelope: Envelope) -> Response | None:
            if skip is not None and skip(envelope):
                return await next_(envelope)
            fields = {
                "connection_id": envelope.connection_id,
                "envelope_id": envelope.envelope_id,
                "helo": envelope.helo,
                "remote_ip": envelope.remote_ip,
                "mail_from": envelope.mail_from.address if envelope.mail_from else None,
                "rcpt_to": [r.address for r in envelope.rcpt_to],
                "tls": envelope.tls is not None,
                "esmtp": envelope.esmtp,
                "utf8": envelope.utf8,
                "size": len(envelope),
            }
            target.debug("mail request %s", fields, extra={"smtpx": fields})
            start = time.perf_counter()
            response: Response | None = None
            try:
                response = await next_(envelope)
                return response
            finally:
                code = R.SUCCESS_MESSAGE_ACCEPTED.code if response is None else response.code
                done = {
                    **fields,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                    "code": code,
                    "response": str(response) if response is not None else None,
                }
                if envelope.error is not None:
                    done["error"] = repr(envelope.error)
                level = logging.ERROR if envelope.error is not None else logging.INFO
                target.log(
                    level,
                    "mail %s from=%s to=%s size=%d code=%s",
                    envelope.envelope_id,
                    fields["mail_from"],
                    ",".join(fields["rcpt_to"]),  # type: ignore[arg-type]
                    fields["size"],
                    code,
                    extra={"smtpx": done},
                )

        return log_message

    return middleware


def recover(next_: HandlerFunc) -> HandlerFunc:
    """Turn an exception below into ``451 4.3.0`` and record it on ``envelope.error``.

    A raised ``ResponseError`` is not a failure: its reply is returned as is.
    """
    log = logging.getLogger("smtpx")

    async def recovering(envelope: Envelope) -> Response | None:
        try:
            return await next_(envelope)
        except ResponseError as exc:
            return exc.response
        except Exception as exc:
            envelope.error = exc
            log.exception("recovered from handler error (envelope %s)", envelope.envelope_id)
            return R.ERROR_HANDLER

    return recovering


def add_return_path(next_: HandlerFunc) -> HandlerFunc:
    """Prepend ``Return-Path: <reverse-path>`` (RFC 5321 4.4); ``<>`` for bounces."""

    async def with_return_path(envelope: Envelope) -> Response | None:
        sender = envelope.mail_from.address if envelope.mail_from is not None else ""
        envelope.prepend_header("Return-Path", f"<{sender}>")
        return await next_(envelope)

    return with_return_path


def add_delivered_to() -> Middleware:
    """Prepend ``Delivered-To`` when the message has exactly one recipient (as Go does)."""

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def with_delivered_to(envelope: Envelope) -> Response | None:
            if len(envelope.rcpt_to) == 1:
                envelope.prepend_header("Delivered-To", envelope.rcpt_to[0].address)
            return await next_(envelope)

        return with_delivered_to

    return middleware


def received_protocol(envelope: Envelope) -> str:
    """The RFC 3848 / RFC 6531 ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP...

    ``S`` marks TLS, ``A`` a client that authenticated (AUTH, RFC 4954).
    """
    auth = "A" if envelope.authenticated is not None else ""
    tls = "S" if envelope.tls is not None else ""
    if envelope.utf8:
        return f"UTF8SMTP{tls}{auth}"
    if not envelope.esmtp:
        return "SMTP"
    return f"ESMTP{tls}{auth}"


def _ip_literal(ip: str) -> str:
    # RFC 5321 4.1.3: IPv6 literals carry the "IPv6:" tag.
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    return f"IPv6:{parsed.compressed}" if parsed.version == 6 else parsed.compressed


def add_received_header(hostname: str | None = None) -> Middleware:
    """Prepend a ``Received`` trace header (RFC 5321 4.4).

    Args:
        hostname: The name after ``by``; defaults to the envelope's server hostname.
    """

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def with_received(envelope: Envelope) -> Response | None:
            by = hostname or envelope.hostname
            helo = envelope.helo or "unknown"
            lines = [f"from {helo} ([{_ip_literal(envelope.remote_ip)}])"]
            by_line = f"by {by} with {received_protocol(envelope)}"
            if envelope.tls is not None:
                by_line += f" (version={envelope.tls.version} cipher={envelope.tls.cipher})"
            lines.append(f"{by_line} id {envelope.envelope_id}")
            if len(envelope.rcpt_to) == 1:
                lines.append(f"for <{envelope.rcpt_to[0].address}>")
            date = email.utils.format_datetime(envelope.received_at)
            lines[-1] += ";"
            lines.append(date)
            envelope.prepend_header("Received", "\r\n\t".join(lines))
            return await next_(envelope)

        return with_received

    return middleware
