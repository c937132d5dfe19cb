"""Connection states and the configuration of the protocol core.

Theory of operation. One ``Connection`` object follows one client. Its ``state`` says what
the next input bytes mean:

- ``COMMAND``: bytes are command lines. Each complete line yields exactly one reply, queued in
  order, so pipelined commands (RFC 2920) get their replies in order and can be written at once.
- ``DATA``: bytes belong to the message until CRLF.CRLF; they go straight to the DATA reader.
- ``BDAT``: the next bytes are a BDAT chunk (RFC 3030) of a size the command declared; exactly
  that many are read, whether the chunk is accepted or refused, so that the client and the
  server never disagree about where the next command starts.
- ``AWAIT_REPLY``: the message is complete and the driver owes the reply (``send``). Input is
  buffered, not parsed, until then: a command pipelined after the final dot must not be answered
  before the message is.
- ``STARTTLS``: 220 was queued; no plaintext after it is ever parsed (RFC 3207 5). The driver
  calls ``tls_established`` after the handshake.
- ``AUTH``: a 334 challenge was queued; the next line is a SASL response (up to 12288 octets,
  RFC 4954 4), handed to the driver as ``AuthResponse``.
- ``CLOSED``: nothing more is parsed.

Decisions. With ``hook_helo``, ``hook_mail`` or ``hook_rcpt`` set, an acceptable HELO/EHLO, MAIL
or RCPT queues no reply: its event is returned in ``AWAIT_REPLY`` and the driver answers it with
``Connection.decide`` (None for the default reply). Input is held meanwhile, so replies to
pipelined commands stay in order (RFC 2920). Without hooks, nothing of this runs. AUTH works the
same way (``AuthRequest``, then ``sasl_challenge``/``auth_done``).

Invariants:
1. Every reply is produced by the core, except the reply to a ``Message`` event.
2. Bad client input only ever produces an SMTP reply (or a close after one); any other exception
   is a bug. Should one happen anyway, ``Connection`` catches it as a last resort, logs it once
   (logger ``smtpx.protocol``) and answers ``451 4.3.0`` to the command that caused it (the
   session goes on), or ``421 4.3.0`` and closes when it happened while reading a message or
   outside any command.
3. Memory is bounded: the command buffer by ``max_line_length``, the message by ``max_size``
   (DATA and BDAT alike). A BDAT chunk is read even when refused, but never one declared larger
   than ``max_size``: that one gets ``552 5.3.4`` and the connection closes.
4. Time is bounded per client: ``max_errors`` error replies or ``max_junk_commands`` junk
   commands without an accepted message end the session with 421 (Postfix's
   ``smtpd_hard_error_limit`` and ``smtpd_junk_command_limit``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["COMMAND_LINE_MAX_LENGTH", "COMMAND_VERB_MAX_LENGTH", "ProtocolConfig", "State"]

COMMAND_LINE_MAX_LENGTH = 1024
COMMAND_VERB_MAX_LENGTH = 16


class State(enum.Enum):
    """Where a connection is in the SMTP dialogue."""

    COMMAND = "command"
    DATA = "data"
    BDAT = "bdat"
    AWAIT_REPLY = "await-reply"
    STARTTLS = "starttls"
    AUTH = "auth"
    CLOSED = "closed"


# On CPython 3.11 ``enum.EnumType`` defines ``__getattr__``, so every ``State.X`` goes through
# the type's slow attribute hook (about 740 instructions more than a plain class attribute; 66
# per message before these existed, bench/README.md). The per-read and per-command paths
# compare against these module-level aliases instead: one specialised global load. They are the
# members themselves (``S_COMMAND is State.COMMAND``); ``State`` stays the public type.
S_COMMAND: Final = State.COMMAND
S_DATA: Final = State.DATA
S_BDAT: Final = State.BDAT
S_AWAIT_REPLY: Final = State.AWAIT_REPLY
S_STARTTLS: Final = State.STARTTLS
S_CLOSED: Final = State.CLOSED


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    """What the core needs to know about the server; shared by every connection.

    Attributes:
        hostname: Used in the greeting and the EHLO reply.
        max_size: Largest message accepted, advertised as SIZE (RFC 1870).
        max_recipients: RCPT commands accepted per transaction.
        max_unrecognized_commands: The connection closes (421) at this many unknown commands.
        tls_available: A TLS context is configured, so STARTTLS may be offered.
        require_tls: MAIL before STARTTLS is refused with 530 5.7.0.
        normalize_line_endings: Store bare CR/LF in DATA as CRLF instead of rejecting.
        max_line_length: Longest command line, CRLF excluded.
        banner: Text after the hostname in the 220 greeting.
        max_errors: The session ends with ``421 4.7.0`` once the core has given this many
            error replies (4xx/5xx) without an accepted message in between, as Postfix's
            ``smtpd_hard_error_limit`` (default 20). Counted: every 4xx/5xx the core sends to a
            command line (unknown or malformed commands, bad arguments, wrong sequence, over-long
            lines, refused parameters) and to the end of a message it refuses (size, bare CR/LF,
            NUL). Not counted: replies the handler chooses. A message accepted (a 2xx reply to
            ``send``) resets the count. 0 disables the limit.
        max_junk_commands: NOOP, RSET, VRFY and HELP commands allowed without an accepted
            message in between (Postfix's ``smtpd_junk_command_limit``, default 100: NOOP,
            VRFY, ETRN, RSET; ETRN and EXPN are answered 502 here and count as errors instead).
            The next one is answered ``421 4.7.0`` and the session ends. Unlike Postfix, which
            then counts each junk command as an error, smtpx closes at once. An accepted message
            resets the count. 0 disables the limit. A non-LAST ``BDAT 0`` counts too.
        forbid_unauth_pipelining: Drop clients that do not wait for a reply where RFC 2920 says
            they must, as Postfix 3.9's ``smtpd_forbid_unauth_pipelining`` (on by default):
            input received after EHLO, HELO, DATA, VRFY, EXPN, TURN or NOOP before their
            reply was sent (RFC 2920 3.1: these end a group; after DATA such input would be read
            as the message, or run as a second transaction), and input after any command while
            PIPELINING is not in effect (before EHLO, or after HELO). The client gets
            ``554 5.5.0`` and the connection closes. QUIT and STARTTLS are not checked: input
            after them is discarded anyway (RFC 3207 5).
        hook_helo: HELO/EHLO wait for ``Connection.decide`` (a session hook runs).
        hook_mail: MAIL waits for ``Connection.decide``.
        hook_rcpt: RCPT waits for ``Connection.decide``.
        auth_mechanisms: SASL mechanisms (upper case) to offer; empty means no AUTH (502).
        auth_insecure: Offer AUTH without TLS too (else ``538 5.7.11`` before TLS).
        auth_required: MAIL gets ``530 5.7.0`` until AUTH succeeded.
        allow_nul: Store NUL bytes in DATA. Off by default: a message holding a NUL is read to
            its end and refused with ``550 5.6.0`` (RFC 5322 2.3; a later hop that drops NULs
            would read ``CRLF NUL . CRLF`` as the end of the data).
        lmtp: Speak LMTP (RFC 2033): LHLO instead of HELO/EHLO (which get 500), and one reply
            per accepted recipient after the message.
        dsn: Advertise DSN and parse its MAIL and RCPT parameters (RFC 3461); without it they
            get ``555 5.5.4``.
        offer_requiretls: Advertise REQUIRETLS (RFC 8689) on TLS connections and accept the
            MAIL parameter there; on a plaintext connection the parameter gets ``530 5.7.10``.
    """

    hostname: str
    max_size: int = 10 * 1024 * 1024
    max_recipients: int = 100
    max_unrecognized_commands: int = 5
    tls_available: bool = False
    require_tls: bool = False
    normalize_line_endings: bool = False
    max_line_length: int = COMMAND_LINE_MAX_LENGTH
    banner: str = "ESMTP smtpx"
    allow_nul: bool = False
    max_errors: int = 20
    max_junk_commands: int = 100
    forbid_unauth_pipelining: bool = True
    lmtp: bool = False
    dsn: bool = False
    offer_requiretls: bool = False
    hook_helo: bool = False
    hook_mail: bool = False
    hook_rcpt: bool = False
    auth_mechanisms: tuple[str, ...] = ()
    auth_insecure: bool = False
    auth_required: bool = False
