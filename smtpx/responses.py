"""SMTP replies: the Response type, new_response(), and the canned replies.

Every canned reply carries an RFC 3463 enhanced status code whose class matches the basic
code, as ENHANCEDSTATUSCODES (RFC 2034) requires once it is advertised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "CLASS_PERMANENT_FAILURE",
    "CLASS_SUCCESS",
    "CLASS_TRANSIENT_FAILURE",
    "ERROR_DATA_TIMEOUT",
    "ERROR_HANDLER",
    "ERROR_LOCAL_PROCESSING",
    "ERROR_SHUTDOWN",
    "ERROR_TIMEOUT",
    "ERROR_TOO_MANY_CLIENTS",
    "ERROR_TOO_MANY_ERRORS",
    "ERROR_TOO_MANY_JUNK_COMMANDS",
    "ERROR_TOO_MANY_RECIPIENTS",
    "FAIL_AUTH_REQUIRED",
    "FAIL_BAD_SEQUENCE_ALREADY_TLS",
    "FAIL_BAD_UTF8",
    "FAIL_BARE_LINE_ENDING",
    "FAIL_COMMAND_NOT_IMPLEMENTED",
    "FAIL_HELO_REQUIRED",
    "FAIL_IMPROPER_PIPELINING",
    "FAIL_INVALID_ADDRESS",
    "FAIL_INVALID_SENDER",
    "FAIL_LINE_TOO_LONG",
    "FAIL_MAIL_CMD",
    "FAIL_MAX_UNRECOGNIZED_CMD",
    "FAIL_MESSAGE_SIZE_EXCEEDED",
    "FAIL_NESTED_MAIL_CMD",
    "FAIL_NO_RECIPIENTS_DATA_CMD",
    "FAIL_NO_SENDER_DATA_CMD",
    "FAIL_NO_SENDER_RCPT_CMD",
    "FAIL_NUL_IN_DATA",
    "FAIL_RCPT_CMD",
    "FAIL_SYNTAX_ERROR",
    "FAIL_TLS_REQUIRED",
    "FAIL_UNKNOWN_PARAMETER",
    "FAIL_UNRECOGNIZED_CMD",
    "FAIL_UTF8_NOT_ENABLED",
    "REJECTED_RCPT_CMD",
    "REJECTED_SENDER_MAIL_CMD",
    "SUCCESS_DATA_CMD",
    "SUCCESS_MAIL_CMD",
    "SUCCESS_MESSAGE_ACCEPTED",
    "SUCCESS_MESSAGE_QUEUED",
    "SUCCESS_NOOP_CMD",
    "SUCCESS_QUIT_CMD",
    "SUCCESS_RCPT_CMD",
    "SUCCESS_RESET_CMD",
    "SUCCESS_START_TLS_CMD",
    "SUCCESS_VERIFY_CMD",
    "PerRecipient",
    "Response",
    "ResponseError",
    "new_response",
    "wrap_response",
]

CLASS_SUCCESS = 2
CLASS_TRANSIENT_FAILURE = 4
CLASS_PERMANENT_FAILURE = 5


@dataclass(frozen=True, slots=True)
class Response:
    r"""One SMTP reply.

    Attributes:
        code: The three-digit reply code (RFC 5321 4.2).
        enhanced: The RFC 3463 enhanced status code, e.g. ``"5.7.1"``; empty for replies that
            carry none (220 greeting, 354).
        text: The human-readable text. It may hold several lines separated by ``"\\n"``;
            each becomes its own reply line.
    """

    code: int
    enhanced: str
    text: str
    _wire: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        if "\r" in self.text or "\x00" in self.text:
            raise ValueError("reply text must not contain CR or NUL")
        if self.enhanced and self.enhanced[0] != str(self.code)[0]:
            raise ValueError(f"enhanced code {self.enhanced} does not match class of {self.code}")
        # Replies are sent far more often than built: encode once (frozen, so set it directly).
        wire = ("\r\n".join(self.lines()) + "\r\n").encode("utf-8")
        object.__setattr__(self, "_wire", wire)

    @property
    def status_code(self) -> int:
        """The basic reply code (Go ``StatusCode()``)."""
        return self.code

    @property
    def class_(self) -> int:
        """The reply class: 2 success, 3 intermediate, 4 transient, 5 permanent."""
        return self.code // 100

    @property
    def is_success(self) -> bool:
        """True for 2xx replies."""
        return self.code // 100 == CLASS_SUCCESS

    def lines(self) -> list[str]:
        """The reply as wire lines without CRLF (RFC 5321 4.2.1 multiline form)."""
        prefix = f"{self.enhanced} " if self.enhanced else ""
        texts = self.text.split("\n")
        last = len(texts) - 1
        return [
            f"{self.code}{' ' if i == last else '-'}{prefix}{t}".rstrip()
            for i, t in enumerate(texts)
        ]

    def wire(self) -> bytes:
        """The reply as bytes ready to send, CRLF terminated."""
        return self._wire

    def __str__(self) -> str:
        return "\r\n".join(self.lines())


def _default_enhanced(code: int) -> str:
    cls = code // 100
    return f"{cls}.0.0" if cls in (2, 4, 5) else ""


def new_response(code: int, text: str, enhanced: str | None = None) -> Response:
    """Build a reply.

    Args:
        code: The basic reply code, 200..599.
        text: The reply text.
        enhanced: The RFC 3463 code; defaults to ``X.0.0`` of the reply's class (no code for
            1xx/3xx), so replies stay valid when ENHANCEDSTATUSCODES is advertised.

    Returns:
        The Response. Unlike the Go package there is no ``OK:`` / ``Permanent failure:`` prefix.
    """
    return Response(code, _default_enhanced(code) if enhanced is None else enhanced, text)


class ResponseError(Exception):
    """An exception that carries the SMTP reply to send.

    Raise it from a handler or middleware to answer with ``response``; ``wrap_response`` builds
    one around another error (Go ``WrapResponse``).
    """

    def __init__(self, response: Response, error: BaseException | None = None) -> None:
        super().__init__(str(error) if error is not None else str(response))
        self.response = response
        self.error = error


def wrap_response(response: Response, error: BaseException | None = None) -> ResponseError:
    """Attach an error to a reply (Go ``WrapResponse``)."""
    return ResponseError(response, error)


def _r(code: int, enhanced: str, text: str) -> Response:
    return Response(code, enhanced, text)


# RFC 5321 4.2.2 codes; RFC 3463 / IANA enhanced codes.
SUCCESS_MAIL_CMD = _r(250, "2.1.0", "OK")
SUCCESS_RCPT_CMD = _r(250, "2.1.5", "OK")
SUCCESS_RESET_CMD = _r(250, "2.0.0", "OK")
SUCCESS_NOOP_CMD = _r(250, "2.0.0", "OK")
SUCCESS_VERIFY_CMD = _r(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)
SUCCESS_QUIT_CMD = _r(221, "2.0.0", "Bye")
SUCCESS_DATA_CMD = _r(354, "", "End data with <CR><LF>.<CR><LF>")
SUCCESS_START_TLS_CMD = _r(220, "2.0.0", "Ready to start TLS")
SUCCESS_MESSAGE_QUEUED = _r(250, "2.0.0", "OK: queued")
SUCCESS_MESSAGE_ACCEPTED = _r(250, "2.0.0", "Message accepted")

FAIL_LINE_TOO_LONG = _r(500, "5.5.2", "Line too long")
FAIL_UNRECOGNIZED_CMD = _r(500, "5.5.1", "Unrecognized command")
FAIL_COMMAND_NOT_IMPLEMENTED = _r(502, "5.5.1", "Command not implemented")
FAIL_MAX_UNRECOGNIZED_CMD = _r(421, "4.7.0", "Too many unrecognized commands, closing connection")
FAIL_SYNTAX_ERROR = _r(501, "5.5.4", "Syntax error in parameters or arguments")
FAIL_INVALID_ADDRESS = _r(501, "5.1.3", "Invalid address")
FAIL_INVALID_SENDER = _r(501, "5.1.7", "Invalid sender address")
FAIL_HELO_REQUIRED = _r(503, "5.5.1", "Send HELO/EHLO first")
FAIL_NESTED_MAIL_CMD = _r(503, "5.5.1", "Nested MAIL command")
FAIL_NO_SENDER_RCPT_CMD = _r(503, "5.5.1", "Need MAIL before RCPT")
FAIL_NO_SENDER_DATA_CMD = _r(503, "5.5.1", "Need MAIL before DATA")
FAIL_NO_RECIPIENTS_DATA_CMD = _r(503, "5.5.1", "Need RCPT before DATA")
FAIL_BAD_SEQUENCE_ALREADY_TLS = _r(503, "5.5.1", "TLS already active")
FAIL_UNKNOWN_PARAMETER = _r(555, "5.5.4", "Unsupported MAIL/RCPT parameter")
FAIL_UTF8_NOT_ENABLED = _r(553, "5.6.7", "Internationalized address needs SMTPUTF8")
FAIL_MESSAGE_SIZE_EXCEEDED = _r(552, "5.3.4", "Message size exceeds fixed maximum message size")
# Postfix answers smuggling attempts the same way (smtpd_forbid_bare_newline).
FAIL_BARE_LINE_ENDING = _r(550, "5.5.2", "Bare CR or LF in message data; lines must end in CRLF")
# RFC 5322 2.3/3.5: NUL is not allowed in a message; a hop that drops NULs would read
# CRLF NUL "." CRLF as the end of data. RFC 3463 5.6.0: other or undefined media error.
FAIL_NUL_IN_DATA = _r(550, "5.6.0", "NUL character in message data")
# Postfix answers a command line that is not UTF-8 the same way ("bad UTF-8 syntax").
FAIL_BAD_UTF8 = _r(500, "5.5.2", "Invalid UTF-8 in command line")
# Postfix 3.9 smtpd_forbid_unauth_pipelining: "554 5.5.0 Error: SMTP protocol synchronization".
FAIL_IMPROPER_PIPELINING = _r(554, "5.5.0", "Improper command pipelining, closing connection")
FAIL_TLS_REQUIRED = _r(530, "5.7.0", "Must issue a STARTTLS command first")
FAIL_AUTH_REQUIRED = _r(530, "5.7.0", "Authentication required")
REJECTED_SENDER_MAIL_CMD = _r(553, "5.1.7", "Sender address rejected")
REJECTED_RCPT_CMD = _r(553, "5.1.3", "Recipient address rejected")
FAIL_MAIL_CMD = _r(550, "5.1.1", "User unknown in local recipient table")
FAIL_RCPT_CMD = _r(550, "5.1.1", "User unknown in local recipient table")

ERROR_TOO_MANY_RECIPIENTS = _r(452, "4.5.3", "Too many recipients")
ERROR_HANDLER = _r(451, "4.3.0", "Requested action aborted: local error in processing")
ERROR_LOCAL_PROCESSING = ERROR_HANDLER
ERROR_SHUTDOWN = _r(421, "4.3.0", "Server is shutting down, try again later")
ERROR_TIMEOUT = _r(421, "4.4.2", "Timeout, closing connection")
ERROR_DATA_TIMEOUT = ERROR_TIMEOUT
ERROR_TOO_MANY_CLIENTS = _r(421, "4.3.2", "Too many connections, try again later")
# Postfix smtpd_hard_error_limit / smtpd_junk_command_limit answer "421 4.7.0 ... too many ...".
ERROR_TOO_MANY_ERRORS = _r(421, "4.7.0", "Too many errors, closing connection")
ERROR_TOO_MANY_JUNK_COMMANDS = _r(421, "4.7.0", "Too many junk commands, closing connection")


# Over SMTP a PerRecipient with replies of different classes has no one true reply.
_MIXED_OVER_SMTP = _r(
    451, "4.3.0", "Requested action aborted: per-recipient replies differ (SMTP has one reply)"
)


@dataclass(frozen=True, slots=True, init=False)
class PerRecipient(Response):
    """One reply per recipient, in RCPT order: what an LMTP handler may return (RFC 2033 4.2).

    It is a ``Response`` (so middleware and ``chain()`` take it as one): its own code and text
    are the one reply SMTP can give, ``smtp`` when given, else the first reply when every reply
    is of the same class (all 2xx, all 4xx or all 5xx), else ``451 4.3.0``: an SMTP client
    cannot be told that some recipients were refused, and a 250 would lose them.

    Attributes:
        replies: One final reply per recipient, in RCPT order (None given became
            ``SUCCESS_MESSAGE_ACCEPTED``).

    Args:
        replies: One per recipient of ``envelope.rcpt_to``; None means ``250 2.0.0`` accepted.
            A count that differs from the recipients' is a handler error (``451 4.3.0`` to
            each, logged).
        smtp: The reply to give instead when the message came over SMTP.

    Raises:
        ValueError: ``replies`` is empty.
    """

    replies: tuple[Response, ...] = ()

    def __init__(self, replies: Iterable[Response | None], smtp: Response | None = None) -> None:
        kept = tuple(SUCCESS_MESSAGE_ACCEPTED if r is None else r for r in replies)
        if not kept:
            raise ValueError("PerRecipient needs at least one reply")
        if smtp is None:
            first = kept[0].code // 100
            smtp = kept[0] if all(r.code // 100 == first for r in kept) else _MIXED_OVER_SMTP
        object.__setattr__(self, "replies", kept)
        Response.__init__(self, smtp.code, smtp.enhanced, smtp.text)
