"""Forwarding: relay each transaction to a backend MTA or mail store before the client's reply.

``Forward(url)`` is a handler and a set of session hooks that follows the client's
transaction on a backend, as Postfix's before-queue ``smtpd_proxy_filter`` does:

* at MAIL it takes a backend connection from a bounded pool and sends MAIL; the backend's
  refusal is the client's reply;
* each RCPT is sent when it arrives; a recipient the backend refuses is refused to the client
  then and there;
* after DATA the message goes to the backend and the backend's reply is the client's: 2xx
  only when the backend accepted it, its own 4xx/5xx passed on (code and enhanced code, text
  checked and re-wrapped in a ``Response``). A backend that cannot be reached, breaks the
  protocol, or gives no complete reply within ``timeout`` (the time for a WHOLE reply, so one
  that dribbles a byte at a time is cut off too) makes it ``451 4.4.1``.

Backend URLs:

* ``smtp://host:port``: SMTP (default port 25); ``smtp://host:port?starttls=1`` upgrades the
  connection with STARTTLS first (the certificate is verified against ``host`` unless
  ``tls_context`` says otherwise; ``starttls=1`` with a backend that does not offer it fails).
* ``lmtp://host:port`` (default port 24) and ``lmtp+unix:///path/to/socket``: LMTP (RFC 2033).
  After the message the backend answers once per recipient. With LMTP on the front too
  (``Server(lmtp=True)``) each recipient gets exactly the backend's reply for it
  (``PerRecipient``); a missing or malformed reply makes ``451 4.4.1`` for that recipient and
  the ones after it, and the connection is closed, never retried (no duplicate deliveries).
  With SMTP on the front there is only one reply to give: ``250`` when the backend accepted
  every recipient, else its first failure (a 4xx one before a 5xx one). A partial acceptance
  therefore makes the client retry (or bounce) recipients that were delivered: a duplicate is
  preferred to a loss, as an SMTP 250 would claim responsibility for recipients that failed
  and LMTP has no queue to bounce from. It is logged with the recipients concerned.

Only the parameters the backend advertised in its EHLO/LHLO reply are passed on, each
re-encoded from its parsed value and never copied as raw text: ``SIZE``, ``BODY``,
``SMTPUTF8``, DSN's ``RET``, ``ENVID``, ``NOTIFY`` and ``ORCPT`` (RFC 1870, 6152, 6531, 3461),
and ``AUTH=`` (RFC 4954 5), which becomes ``AUTH=<>`` unless the client authenticated.

Connections come from a bounded pool (``pool_size``) and are reused across transactions; one
whose transaction ended without a message (RSET, HELO, a new MAIL, QUIT, the client leaving)
is reset with RSET before it goes back. Idle ones are closed after ``idle_timeout``. When the
pool is exhausted a MAIL waits at most ``timeout`` for a free connection, then gets
``451 4.4.1``; nothing blocks the event loop. A pooled connection that the backend closed
meanwhile is found at MAIL (the command fails) and replaced once; nothing is ever re-sent
after the message was, so a failure then cannot deliver twice.

Why not aiosmtplib (the issue's suggestion): read in its source (5.1.3, as installed), it
has no LMTP (no LHLO; its DATA reads exactly one reply, so the per-recipient replies of
RFC 2033 4.2 would be lost or misread), it takes the message as one ``bytes`` object and
copies it twice (line-end normalisation, which also alters a message with a bare CR, and
dot-stuffing by regex), so a message cannot be streamed, and it bounds a reply's size
(32 KiB) but not its line count. What is needed here is small: one command, one bounded
reply, a deadline per whole reply; so this module has its own client on asyncio streams and
no extra dependency (so there is no ``smtpx[forward]`` extra either).

The message goes by BDAT (RFC 3030) when the backend announces CHUNKING (Postfix and
Dovecot do): one round trip less than DATA's 354, and no dot-stuffing; else by DATA,
dot-stuffed after every LF (a lenient backend must not see an end of data in a bare LF).

Use one ``Forward`` per ``Server`` (transactions are keyed by connection id). Pass it as the
handler, or, so that other hooks (e.g. ``filter_recipient_domains``) decide before the
backend sees a recipient, as the last entry of ``hooks`` with ``new_handler(fwd.data)`` as the
handler (the CLI does this). If a hook after it refuses a recipient the backend already
took, the message gets ``451 4.3.0`` and is never sent (logged). It needs the
``disconnect`` hook of ``smtpx.hooks``.
"""

from __future__ import annotations

from ._handler import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_MAX_REPLY_LINES,
    DEFAULT_POOL_SIZE,
    DEFAULT_TIMEOUT,
    FORWARD_FAILED,
    Forward,
)
from ._url import BackendURL, parse_backend_url

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REPLY_LINES",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TIMEOUT",
    "FORWARD_FAILED",
    "BackendURL",
    "Forward",
    "parse_backend_url",
]
