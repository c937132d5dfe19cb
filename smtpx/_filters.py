"""Recipient and sender filters (the Go package's, with enhanced status codes).

Every rejection carries an RFC 3463 enhanced status code, as ENHANCEDSTATUSCODES (RFC 2034)
requires once advertised; the Go replies had none:

* a recipient removed by ``filter_recipient``: ``550 5.1.1`` (X.1.1 "bad destination mailbox
  address": the mailbox is not accepted here);
* a recipient domain not served: ``550 5.7.1`` (X.7.1 "delivery not authorized, message
  refused", the code MTAs use for relay denial);
* a sender domain not allowed: ``550 5.7.1`` (X.7.1, likewise a policy refusal; X.1.8 "bad
  sender's system address" would claim the domain is broken, which it is not).

Domain names are compared case-insensitively, without a trailing dot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .address import Address
from .envelope import Envelope
from .handler import HandlerFunc, Middleware
from .responses import Response, new_response

__all__ = [
    "FILTERED_RECIPIENT",
    "RECIPIENT_DOMAIN_NOT_ALLOWED",
    "SENDER_DOMAIN_NOT_ALLOWED",
    "filter_recipient",
    "filter_recipient_domains",
    "recipient_domains_whitelist",
    "sender_domains_whitelist",
]

FILTERED_RECIPIENT = new_response(550, "Filtered recipient", "5.1.1")
RECIPIENT_DOMAIN_NOT_ALLOWED = new_response(550, "Recipient domain not allowed", "5.7.1")
SENDER_DOMAIN_NOT_ALLOWED = new_response(550, "Sender domain not allowed", "5.7.1")


def _domains(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(d.strip().rstrip(".").lower() for d in domains)


def _filter(include: Callable[[Address], bool], refusal: Response) -> Middleware:
    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def filtered(envelope: Envelope) -> Response | None:
            envelope.rcpt_to = [r for r in envelope.rcpt_to if include(r)]
            if not envelope.rcpt_to:
                return refusal
            return await next_(envelope)

        return filtered

    return middleware


def _pass_through(next_: HandlerFunc) -> HandlerFunc:
    return next_


def filter_recipient(include: Callable[[Address], bool]) -> Middleware:
    """Keep only the recipients for which ``include`` is true (Go ``FilterRecipient``).

    If none is left, ``rcpt_to`` becomes empty and the message is refused with
    ``550 5.1.1 Filtered recipient``.
    """
    return _filter(include, FILTERED_RECIPIENT)


def filter_recipient_domains(*domains: str) -> Middleware:
    """Keep only recipients in ``domains`` (Go ``FilterRecipientDomains``).

    No domains lets everything through. If no recipient is left, the message is refused with
    ``550 5.7.1 Recipient domain not allowed``.
    """
    allowed = _domains(domains)
    if not allowed:
        return _pass_through
    return _filter(lambda r: r.domain.rstrip(".") in allowed, RECIPIENT_DOMAIN_NOT_ALLOWED)


def recipient_domains_whitelist(*domains: str) -> Middleware:
    """Accept the message if any recipient is in ``domains`` (Go ``RecipientDomainsWhitelist``).

    ``rcpt_to`` is not changed. No domains lets everything through; otherwise a message with
    no recipient in the list is refused with ``550 5.7.1 Recipient domain not allowed``.
    """
    allowed = _domains(domains)
    if not allowed:
        return _pass_through

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def whitelisted(envelope: Envelope) -> Response | None:
            if not any(r.domain.rstrip(".") in allowed for r in envelope.rcpt_to):
                return RECIPIENT_DOMAIN_NOT_ALLOWED
            return await next_(envelope)

        return whitelisted

    return middleware


def sender_domains_whitelist(*domains: str) -> Middleware:
    """Accept the message only if the MAIL FROM domain is in ``domains``.

    Go ``SenderDomainsWhitelist``. No domains lets everything through; otherwise a sender
    outside the list, the null sender ``<>`` included, is refused with
    ``550 5.7.1 Sender domain not allowed``.
    """
    allowed = _domains(domains)
    if not allowed:
        return _pass_through

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def whitelisted(envelope: Envelope) -> Response | None:
            sender = envelope.mail_from.domain if envelope.mail_from is not None else ""
            if sender.rstrip(".") not in allowed:
                return SENDER_DOMAIN_NOT_ALLOWED
            return await next_(envelope)

        return whitelisted

    return middleware
