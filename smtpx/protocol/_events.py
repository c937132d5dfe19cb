"""Events the protocol core hands to its driver. Frozen, slotted; not meant to be subclassed."""

from __future__ import annotations

from dataclasses import dataclass, field

from smtpx.address import Address
from smtpx.dsn import RecipientDSN, ReturnContent

__all__ = [
    "NEED_DATA",
    "AuthRequest",
    "AuthResponse",
    "CloseConnection",
    "ConnectionClosed",
    "Event",
    "Greeted",
    "MailFrom",
    "Message",
    "NeedData",
    "RcptTo",
    "StartTLS",
    "XClient",
]


class NeedData:
    """Sentinel type: nothing more can happen until more bytes arrive."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class Greeted:
    """HELO or EHLO was accepted (its reply is already queued)."""

    name: str
    extended: bool


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL was accepted (reply queued): a transaction started."""

    address: Address
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT was accepted (reply queued)."""

    address: Address
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Message:
    """DATA or BDAT LAST completed. The driver must answer it with ``Connection.send``.

    ``rcpt_dsn`` has one entry per recipient (empty ``RecipientDSN()`` without parameters);
    ``chunked`` tells that the message came by BDAT (RFC 3030). ``data`` is the message, less
    any pieces the driver took with ``Connection.drain_message()`` (it holds those).
    """

    mail_from: Address
    rcpt_to: tuple[Address, ...]
    data: bytes
    utf8: bool
    body_type: str
    dsn_ret: ReturnContent | None = None
    dsn_envid: str | None = None
    rcpt_dsn: tuple[RecipientDSN, ...] = ()
    requiretls: bool = False
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class StartTLS:
    """STARTTLS was accepted (220 queued): flush, then run the TLS handshake.

    ``discarded`` counts plaintext bytes that were pipelined after STARTTLS and thrown away
    (RFC 3207 5, CVE-2011-0411).
    """

    discarded: int


@dataclass(frozen=True, slots=True)
class XClient:
    """XCLIENT was accepted (a new 220 greeting is queued); ``attrs`` hold decoded values.

    Keys are uppercase attribute names; a value of None means ``[UNAVAILABLE]`` and
    ``"[TEMPUNAVAIL]"`` is kept as that text.
    """

    attrs: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """AUTH was accepted for a configured mechanism (RFC 4954); no reply is queued yet.

    The driver runs the SASL exchange and answers with ``Connection.sasl_challenge`` (a 334
    line, after which the next client line comes as ``AuthResponse``) or ``Connection.auth_done``.
    ``initial_response`` is the second AUTH argument as sent (``"="`` for an empty one), or None.
    """

    mechanism: str
    initial_response: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """One client line of a SASL exchange, CRLF removed (``repr`` hides it: it holds secrets).

    ``line`` is None when the line was longer than the SASL limit (RFC 4954 4: 12288 octets);
    answer it as the driver answers ``AuthRequest``.
    """

    line: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Flush what is queued, then close the connection (after QUIT or a fatal error)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The client closed its side; ``in_data`` tells whether a message was cut short."""

    in_data: bool


Event = (
    Greeted
    | MailFrom
    | RcptTo
    | Message
    | StartTLS
    | XClient
    | CloseConnection
    | ConnectionClosed
    | AuthRequest
    | AuthResponse
)
