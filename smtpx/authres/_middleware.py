"""The ``authentication_results`` middleware: SPF, DKIM and DMARC, then one header.

Differences from the Go ``AddAuthenticationResult`` (reference 6.1, 9.7, 9.8):

* all lookups are async and share one resolver; DKIM's hashing and signature checks run on
  a small pool of their own (:func:`smtpx.authres.dkim.executor`), within header caps, so the
  event loop keeps serving other connections and the default executor (where synchronous
  handlers store mail) never queues behind them;
* SPF, DKIM and the DMARC record discovery run concurrently under one deadline; a check still
  running at the deadline is reported as ``temperror``;
* SPF uses the client IP as given (IPv6 included) and checks HELO for a null sender;
* DMARC uses the RFC 5322 From domain, the Organizational Domain fallback, ``sp`` and ``pct``;
* DKIM temperror/permerror/policy are told apart from fail, and an unsigned message gets
  ``dkim=none`` (RFC 8601 2.7.1) instead of no entry;
* Authentication-Results fields that claim this server's authserv-id are removed before the
  new one is added (RFC 8601 5);
* optionally, mail failing DMARC whose (sampled) policy is ``reject`` is refused with
  ``550 5.7.1`` (RFC 7489 6.6.4, RFC 3463 X.7.1 "delivery not authorized").
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import dns.asyncresolver

from smtpx.envelope import Envelope
from smtpx.errors import MailParseError
from smtpx.handler import HandlerFunc, Middleware
from smtpx.responses import Response, new_response

from . import (
    NONE,
    PASS,
    TEMPERROR,
    AuthResult,
    DKIMResult,
    DMARCResult,
    Result,
    SPFResult,
    _dns,
    authserv_id_of,
    format,
)
from . import dkim as _dkim
from . import dmarc as _dmarc
from . import spf as _spf

__all__ = ["authentication_results", "remove_authentication_results"]

_log = logging.getLogger("smtpx.authres")
_T = TypeVar("_T")
# A reason longer than this is cut so one field stays well under RFC 5322's 998-octet line.
_MAX_REASON = 200
# What is read of a spooled message's start: the longest header section DKIM verifies, and the
# empty line after it.
_HEAD = _dkim.DEFAULT_MAX_HEADER_BYTES + 4


def remove_authentication_results(message: bytes, authserv_id: str) -> bytes:
    """Drop the Authentication-Results fields of ``message`` that claim ``authserv_id``.

    RFC 8601 5: a border MTA must remove (or rename) such fields, which were forged or came
    from an earlier pass through this server. The comparison is case-insensitive. Fields of
    other authserv-ids, and the body, are kept byte for byte. It runs on the event loop, so
    the header section is scanned by plain regular expression searches (C speed, linear) and
    only the Authentication-Results fields reach Python code.

    Returns:
        ``message`` itself when nothing was removed, otherwise a new bytes object.
    """
    wanted = authserv_id.lower()
    end = _header_end(message)
    # The names are found on a lowercased copy with a literal prefix (fast search), each
    # field's end by a plain search: no regex repetition over continuation lines.
    lowered = b"\n" + message[:end].lower()
    drop: list[tuple[int, int]] = []
    for m in _AR_NAME.finditer(lowered):
        start = m.start()  # the LF in front shifts lowered by one
        found = _FIELD_END.search(message, m.end() - 1, end)
        stop = end if found is None else found.end()
        value = message[m.end() - 1 : stop].replace(b"\r", b"").replace(b"\n", b"")
        ident = authserv_id_of(value.decode("utf-8", "replace"))
        if ident is not None and ident.lower() == wanted:
            drop.append((start, stop))
    if not drop:
        return message
    parts: list[bytes] = []
    pos = 0
    for start, stop in drop:
        parts.append(message[pos:start])
        pos = stop
    parts.append(message[pos:])
    return b"".join(parts)


# Applied to LF + the lowercased header section: an Authentication-Results name and colon.
_AR_NAME = re.compile(rb"\nauthentication-results[ \t]*:")
# The end of a header field: an LF not followed by SP or HTAB (RFC 5322 2.2.3).
_FIELD_END = re.compile(rb"\n(?![ \t])")


def _header_end(message: bytes) -> int:
    """Offset of the empty line that ends the header section (``len(message)`` if none)."""
    if message[:1] == b"\n" or message[:2] == b"\r\n":
        return 0
    crlf = message.find(b"\n\r\n")
    lf = message.find(b"\n\n", 0, len(message) if crlf < 0 else crlf + 2)
    if lf >= 0:
        return lf + 1
    return crlf + 1 if crlf >= 0 else len(message)


def _cut(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


def _outcome(task: asyncio.Task[_T] | None) -> _T | BaseException | None:
    """A finished task's value or exception; None if it had not finished by the deadline."""
    if task is None or not task.done():
        return None
    if task.cancelled():
        return None
    exc = task.exception()
    return exc if exc is not None else task.result()


def authentication_results(
    authserv_id: str,
    *,
    resolver: dns.asyncresolver.Resolver | None = None,
    timeout: float = 10.0,
    reject_dmarc: bool = False,
    rand: Callable[[], float] = random.random,
) -> Middleware:
    """Check SPF, DKIM and DMARC and prepend an Authentication-Results field.

    Args:
        authserv_id: This server's authentication service identifier, usually its host name.
        resolver: The DNS resolver for every lookup (``_dns.resolver_at(host, port)`` points
            it at one nameserver); the system's when None.
        timeout: Seconds all checks together may take; checks still running then are
            reported as ``temperror``.
        reject_dmarc: Refuse mail that fails DMARC with a (sampled) ``reject`` policy, with
            ``550 5.7.1``, instead of passing it on. Every author domain of the From field is
            evaluated and the strictest policy wins (RFC 7489 6.6.1); mail whose author cannot
            be determined (several From fields, a From field that does not parse or is over
            ``dmarc.MAX_FROM_LENGTH`` octets, over ``dmarc.MAX_AUTHOR_DOMAINS`` domains) is
            refused the same way, since a reader would still see an author.
        rand: The random source for DMARC ``pct`` sampling.

    Returns:
        The middleware. It never rejects unless ``reject_dmarc`` is set.
    """
    res = resolver if resolver is not None else _dns.default_resolver()
    # Load the Public Suffix List now, not on the event loop during the first message.
    _dmarc.organizational_domain("example.com")

    def middleware(next_: HandlerFunc) -> HandlerFunc:
        async def check(envelope: Envelope) -> Response | None:
            # A spooled message is checked from its header section and its file: the body is
            # never read into memory (the DKIM body hash streams it in the worker).
            head = await asyncio.to_thread(envelope.head, _HEAD) if envelope.spooled else None
            results, refusal = await _run_checks(envelope, res, timeout, rand, head)
            if envelope.authenticated is not None:
                # RFC 8601 2.7.4: the client authenticated with SMTP AUTH (RFC 4954).
                results = [AuthResult(PASS, auth=envelope.authenticated), *results]
            if head is None:
                envelope.data = remove_authentication_results(envelope.data, authserv_id)
            elif _header_end(head) < len(head) or len(head) == len(envelope):
                # The header section ends within what was read (else it is longer than the
                # DKIM cap and the message got permerror): rewrite only that part.
                cleaned = remove_authentication_results(head, authserv_id)
                if cleaned is not head:
                    envelope.replace_head(len(head), cleaned)
            header = format(authserv_id, results)
            envelope.prepend_header("Authentication-Results", header)
            _log.debug("Authentication-Results: %s", header)
            if reject_dmarc and refusal:
                return new_response(550, refusal, "5.7.1")
            return await next_(envelope)

        return check

    return middleware


async def _run_checks(
    envelope: Envelope,
    resolver: dns.asyncresolver.Resolver,
    timeout: float,
    rand: Callable[[], float],
    head: bytes | None = None,
) -> tuple[list[Result], str]:
    message = envelope.data if head is None else head
    mail_from = envelope.mail_from.address if envelope.mail_from is not None else ""
    # Linear and capped (dmarc.MAX_FROM_LENGTH): cheap enough for the event loop.
    authors = _dmarc.author_domains(message)

    def task(coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        return asyncio.ensure_future(coro)

    spf_task = task(_spf.check(envelope.remote_ip, envelope.helo, mail_from, resolver))
    dkim_task = task(
        _dkim.verify(
            message, resolver=resolver, open_message=None if head is None else envelope.open
        )
    )
    # RFC 7489 6.6.1: every author domain is evaluated.
    dmarc_tasks = {d: task(_dmarc.discover(d, resolver)) for d in authors.domains}
    pending = [spf_task, dkim_task, *dmarc_tasks.values()]
    _, still = await asyncio.wait(pending, timeout=timeout)
    for t in still:
        t.cancel()
    if still:
        await asyncio.wait(still)  # let cancellations finish before reading outcomes

    results: list[Result] = []
    spf = _outcome(spf_task)
    spf_result, spf_domain = NONE, ""
    if isinstance(spf, _spf.SPFResult):
        spf_result, spf_domain = spf.result, spf.domain
        results.append(
            SPFResult(spf.result, _cut(spf.reason), mail_from=mail_from, helo=envelope.helo)
        )
    else:
        why = "timed out" if spf is None else f"failed: {spf}"
        if spf is not None:
            _log.warning("SPF check failed", exc_info=spf)
        results.append(
            SPFResult(TEMPERROR, _cut(f"SPF check {why}"), mail_from=mail_from, helo=envelope.helo)
        )

    dkim = _outcome(dkim_task)
    verifications: list[_dkim.Verification] = []
    if isinstance(dkim, list):
        verifications = dkim
        results.extend(
            [_replace_reason(v.to_result()) for v in verifications] or [DKIMResult(NONE)]
        )
    elif dkim is None:
        results.append(DKIMResult(TEMPERROR, "DKIM check timed out"))
    elif not isinstance(dkim, MailParseError):
        _log.warning("DKIM check failed", exc_info=dkim)
        results.append(DKIMResult(TEMPERROR, _cut(f"DKIM check failed: {dkim}")))
    # A header that cannot be parsed yields no DKIM entry at all (nothing could be checked).

    dmarc_results, refusal = _dmarc_outcome(
        authors, dmarc_tasks, spf_result, spf_domain, verifications, rand
    )
    results.extend(dmarc_results)
    return results, refusal


def _dmarc_outcome(
    authors: _dmarc.Authors,
    tasks: dict[str, asyncio.Task[tuple[_dmarc.Record | None, str]]],
    spf_result: str,
    spf_domain: str,
    verifications: list[_dkim.Verification],
    rand: Callable[[], float],
) -> tuple[list[Result], str]:
    """One ``dmarc=`` result per author domain, and why ``reject_dmarc`` refuses ("" if not).

    RFC 7489 6.6.1: with several author domains, each is evaluated and the strictest policy
    applies, so one ``p=reject`` author is enough to refuse. A message whose author cannot be
    determined (several From fields, an unparsable or over-long From; see
    :class:`smtpx.authres.dmarc.Authors`) is refused too, or ``reject_dmarc`` could be bypassed.
    """
    if not authors.domains:
        result = DMARCResult("permerror", _cut(authors.error or "no usable RFC5322.From domain"))
        refusal = f"Message rejected: {authors.error}; DMARC cannot apply" if authors.refuse else ""
        return [result], refusal
    results: list[Result] = []
    refusal = ""
    for domain, dmarc_task in tasks.items():
        evaluation = _author_evaluation(
            domain, _outcome(dmarc_task), spf_result, spf_domain, verifications, rand
        )
        results.append(DMARCResult(evaluation.result, _cut(evaluation.reason), header_from=domain))
        if (
            not refusal
            and evaluation.result == "fail"
            and evaluation.disposition == _dmarc.POLICY_REJECT
        ):
            refusal = f"Message rejected: DMARC policy of {evaluation.policy_domain} says reject"
    return results, refusal


def _author_evaluation(
    header_from: str,
    found: tuple[_dmarc.Record | None, str] | BaseException | None,
    spf_result: str,
    spf_domain: str,
    verifications: list[_dkim.Verification],
    rand: Callable[[], float],
) -> _dmarc.Evaluation:
    if found is None:
        return _dmarc.Evaluation(TEMPERROR, "DMARC lookup timed out", header_from)
    if isinstance(found, _dmarc.DMARCTempError):
        return _dmarc.Evaluation(TEMPERROR, f"DMARC lookup failed: {found}", header_from)
    if isinstance(found, _dmarc.DMARCRecordError):
        return _dmarc.Evaluation("permerror", f"invalid DMARC record: {found}", header_from)
    if isinstance(found, BaseException):
        _log.warning("DMARC lookup failed", exc_info=found)
        return _dmarc.Evaluation(TEMPERROR, f"DMARC lookup failed: {found}", header_from)
    record, policy_domain = found
    return _dmarc.verdict(
        header_from,
        record,
        policy_domain,
        spf_result=spf_result,
        spf_domain=spf_domain,
        dkim=verifications,
        rand=rand,
    )


def _replace_reason(result: DKIMResult) -> DKIMResult:
    if len(result.reason) <= _MAX_REASON:
        return result
    return DKIMResult(
        result.value,
        _cut(result.reason),
        result.domain,
        result.identifier,
        result.selector,
        result.signature,
        result.algorithm,
    )
