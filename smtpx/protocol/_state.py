"""Connection states and the configuration of the protocol core.

Theory of operation. One ``Connection`` object follows one client. Its ``state`` says what
the next input bytes mean:

- ``COMMAND``: bytes are command lines. Each complete line yields exactly one reply, queued in
  order, so pipelined commands (RFC 2920) get their replies in order and can be written at once.
- ``DATA``: bytes belong to the message until CRLF.CRLF; they go straight to the DATA reader.
- ``AWAIT_REPLY``: the message is complete and the driver owes the reply (``send``). Input is
  buffered, not parsed, until then: a command pipelined after the final dot must not be answered
  before the message is.
- ``STARTTLS``: 220 was queued; no plaintext after it is ever parsed (RFC 3207 5). The driver
  calls ``tls_established`` after the handshake.
- ``CLOSED``: nothing more is parsed.

Invariants:
1. Every reply is produced by the core, except the reply to a ``Message`` event.
2. Bad client input only ever produces an SMTP reply (or a close after one); any other exception
   escaping the core is a bug.
3. Memory is bounded: the command buffer by ``max_line_length``, the message by ``max_size``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["COMMAND_LINE_MAX_LENGTH", "COMMAND_VERB_MAX_LENGTH", "ProtocolConfig", "State"]

COMMAND_LINE_MAX_LENGTH = 1024
COMMAND_VERB_MAX_LENGTH = 16


class State(enum.Enum):
    """Where a connection is in the SMTP dialogue."""

    COMMAND = "command"
    DATA = "data"
    AWAIT_REPLY = "await-reply"
    STARTTLS = "starttls"
    CLOSED = "closed"


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
        allow_nul: Store NUL bytes in DATA. Off by default: a message holding a NUL is read to
            its end and refused with ``550 5.6.0`` (RFC 5322 2.3; a later hop that drops NULs
            would read ``CRLF NUL . CRLF`` as the end of the data).
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
