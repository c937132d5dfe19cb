"""The sans-IO SMTP server connection: bytes in, replies and events out."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

from smtpx import auth as _auth
from smtpx import responses as R
from smtpx._impl import DataReader
from smtpx.address import Address
from smtpx.dsn import RecipientDSN, ReturnContent
from smtpx.errors import BareLineEndingError, LimitError, NulByteError
from smtpx.responses import Response

from ._commands import (
    CommandSyntaxError,
    is_address_literal,
    is_domain,
    parse_domain_arg,
    parse_params,
    parse_path,
    split_path_and_params,
    xtext_decode,
)
from ._dsn import parse_envid, parse_notify, parse_orcpt, parse_ret
from ._events import (
    NEED_DATA,
    AuthRequest,
    AuthResponse,
    CloseConnection,
    ConnectionClosed,
    Event,
    Greeted,
    MailFrom,
    Message,
    NeedData,
    RcptTo,
    StartTLS,
    XClient,
)
from ._state import (
    S_AWAIT_REPLY,
    S_BDAT,
    S_CLOSED,
    S_COMMAND,
    S_DATA,
    S_STARTTLS,
    ProtocolConfig,
    State,
)

__all__ = ["Connection", "ProtocolError"]

_log = logging.getLogger("smtpx.protocol")

_XCLIENT_ATTRS = frozenset(
    {"NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN", "DESTADDR", "DESTPORT"}
)
_HELP = R.Response(214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP")
_NOT_IMPLEMENTED = frozenset({"EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "AUTH"})
_XCLIENT_DENIED = R.Response(550, "5.7.0", "Insufficient authorization")
_TOO_MUCH_INPUT = R.Response(421, "4.7.0", "Too much pipelined input, closing connection")
_MAX_PIPELINED = 1024 * 1024
_XCLIENT_IN_TRANSACTION = R.Response(503, "5.5.1", "XCLIENT not allowed inside a transaction")
_XCLIENT_BAD_VALUE = R.Response(501, "5.5.4", "Bad XCLIENT attribute value")
_INTERNAL_ERROR_CLOSE = R.Response(421, "4.3.0", "Internal error, closing connection")
# RFC 3030 2: a malformed chunk size leaves the octets that follow unframed; read as commands,
# they would be message text executed as SMTP (smuggling). Answer 501 and hang up, as Postfix
# does (it says 521).
_BDAT_MALFORMED = R.Response(501, "5.5.4", "Malformed BDAT command, closing connection")
# A chunk larger than max_size is never read: refuse it and close (Postfix: 552 5.3.4).
_BDAT_TOO_BIG = R.Response(552, "5.3.4", "Chunk exceeds message size limit, closing connection")
_BDAT_NEEDS_MAIL = R.Response(503, "5.5.1", "Need MAIL before BDAT")
_BDAT_NEEDS_RCPT = R.Response(503, "5.5.1", "Need RCPT before BDAT")
_BDAT_NEEDS_EHLO = R.Response(503, "5.5.1", "Send EHLO first")
_DATA_AFTER_BDAT = R.Response(503, "5.5.1", "DATA not allowed in a BDAT transaction")
# RFC 2033 4.1: an LMTP server does not accept HELO or EHLO.
_LMTP_NEEDS_LHLO = R.Response(500, "5.5.1", "This is an LMTP server: use LHLO")
# RFC 8689 5: REQUIRETLS on a connection without TLS.
_REQUIRETLS_NEEDS_TLS = R.Response(530, "5.7.10", "REQUIRETLS needs a TLS connection")
# Digits of the largest chunk size read at all; more digits are over any max_size.
_MAX_SIZE_DIGITS = 20
# RFC 4954 6: "530 5.7.0 Authentication required".
AUTH_REQUIRED = R.Response(530, "5.7.0", "Authentication required")
_AUTH_NEEDS_EHLO = R.Response(503, "5.5.1", "Send EHLO first")
# _next_line's answer for an over-long SASL line: compared by identity, never equal to a line.
_TOO_LONG = bytes(bytearray(b"<too long>"))
# RFC 2920 3.1: these end a group of pipelined commands; the client waits for their reply.
# QUIT is left out (input after it is dropped with the connection), STARTTLS too (RFC 3207 5:
# the core discards what follows it).
_LAST_IN_GROUP = frozenset({b"EHLO", b"HELO", b"LHLO", b"DATA", b"VRFY", b"EXPN", b"TURN", b"NOOP"})
_ERROR_CLASSES = frozenset(b"45")  # first byte of a 4xx or 5xx reply


def _xclient_valid(name: str, value: str) -> bool:
    # Postfix XCLIENT_README: ADDR/DESTADDR are IPv4 or "IPV6:"-tagged IPv6 addresses
    # (a bare IPv6 address is tolerated), PORT/DESTPORT decimal TCP ports;
    # [TEMPUNAVAIL] is only meaningful for NAME.
    if name in ("ADDR", "DESTADDR"):
        text = value[5:] if value[:5].upper() == "IPV6:" else value
        if "%" in text:
            # ipaddress accepts IPv6 zone ids ("fe80::1%eth0") of any characters, CR and LF
            # included: they would forge or break the Received line. A zone means nothing here.
            return False
        try:
            ipaddress.ip_address(text)
        except ValueError:
            return False
        return True
    if name in ("PORT", "DESTPORT"):
        return value.isascii() and value.isdigit() and len(value) <= 5 and int(value) <= 65535
    if name == "HELO":
        # Checked as EHLO checks its argument (RFC 5321 4.1.1.1): it becomes the Received
        # line's "from" name. ASCII only: it may have come with HELO, which has no SMTPUTF8.
        return value.isascii() and (is_address_literal(value) or is_domain(value))
    if name == "NAME":
        return value.isprintable() and value.isascii()
    if name == "PROTO":
        return value.upper() in ("SMTP", "ESMTP")  # the two values XCLIENT_README defines
    # LOGIN (a SASL name, may be UTF-8): it reaches the logs and the handler, so no controls,
    # line or paragraph separators or bidi/format characters (isprintable() refuses all three).
    return value.isprintable()


def _as_sender_error(exc: CommandSyntaxError) -> CommandSyntaxError:
    # RFC 3463: a bad reverse-path is X.1.7, a bad forward-path X.1.3.
    if exc.response is R.FAIL_INVALID_ADDRESS:
        return CommandSyntaxError(R.FAIL_INVALID_SENDER)
    return exc


class ProtocolError(Exception):
    """The driver used the core out of order (a bug in the driver, never the client's fault)."""


class Connection:
    """One client's SMTP dialogue, without I/O.

    Drive it like h11: ``receive_data(bytes)`` (``b""`` means EOF), then call ``next_event()``
    until it returns ``NEED_DATA``; write ``data_to_send()`` after each batch. A ``Message``
    event must be answered with ``send(response)`` before further events come.

    Args:
        config: The server's protocol settings.
        tls_active: The connection is already encrypted (implicit TLS).
        xclient: None when XCLIENT is disabled; else whether this client may use it.
    """

    __slots__ = (
        "_buf",
        "_chunk_last",
        "_chunk_left",
        "_chunk_refusal",
        "_chunk_size",
        "_chunking",
        "_config",
        "_decision",
        "_discarding",
        "_eof",
        "_errors",
        "_internal_errors",
        "_junk",
        "_out",
        "_pending",
        "_pos",
        "_reader",
        "_sync",
        "_unrecognized",
        "_violation",
        "authenticated",
        "body_type",
        "dsn_envid",
        "dsn_ret",
        "esmtp",
        "helo",
        "mail_auth",
        "mail_from",
        "rcpt_dsn",
        "rcpt_to",
        "requiretls",
        "state",
        "tls_active",
        "utf8",
        "xclient",
    )

    def __init__(
        self, config: ProtocolConfig, *, tls_active: bool = False, xclient: bool | None = None
    ) -> None:
        self._config = config
        self._buf = bytearray()
        self._pos = 0
        self._out: list[bytes] = []
        self._eof = False
        self._discarding = False
        self._reader: DataReader | None = None
        self._pending: Event | None = None
        self._unrecognized = 0
        self._errors = 0  # error replies since the last accepted message (max_errors)
        self._junk = 0  # NOOP/RSET/VRFY/HELP since the last accepted message
        self._internal_errors = 0
        # A reply the client must wait for is queued but not yet taken by data_to_send(): any
        # input now is improper pipelining (forbid_unauth_pipelining).
        self._sync = False
        self._violation = False
        # BDAT (RFC 3030): octets of the current chunk still to read, whether it is LAST, the
        # reply to give once it is read when it is refused, and whether BDAT started the
        # transaction (DATA then gets 503).
        self._chunk_left = 0
        self._chunk_size = 0
        self._chunk_last = False
        self._chunk_refusal: Response | None = None
        self._chunking = False
        # What accepting the command held in AWAIT_REPLY does (hooks; see decide()).
        self._decision: Callable[[Response | None], None] | None = None
        self.state = State.COMMAND
        self.tls_active = tls_active
        self.xclient = xclient
        self.helo = ""
        self.esmtp = False
        self.mail_from: Address | None = None
        self.rcpt_to: list[Address] = []
        self.utf8 = False
        self.body_type = ""
        self.dsn_ret: ReturnContent | None = None
        self.dsn_envid: str | None = None
        self.rcpt_dsn: list[RecipientDSN] = []
        self.requiretls = False
        self.authenticated: str | None = None  # the identity AUTH established
        self.mail_auth: str | None = None  # MAIL AUTH= (RFC 4954 5), None for <>

    # ----------------------------------------------------------------- output
    def greeting(self) -> None:
        """Queue the 220 greeting (RFC 5321 4.3.1)."""
        self._out.append(f"220 {self._config.hostname} {self._config.banner}\r\n".encode())

    def data_to_send(self) -> bytes:
        """Take every queued reply, in order, as one write."""
        self._sync = False
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _reply(self, response: Response) -> None:
        self._out.append(response.wire())

    def send(self, response: Response | Sequence[Response]) -> None:
        """Answer the pending ``Message`` event; the transaction ends either way.

        Args:
            response: The reply. With LMTP (RFC 2033 4.2) one reply per recipient is sent, in
                RCPT order: a single Response is repeated for each, or pass a sequence with
                exactly one per recipient. Over SMTP a sequence must hold exactly one.

        Raises:
            ProtocolError: No message awaits a reply, or the sequence has the wrong length.
        """
        if self.state is not S_AWAIT_REPLY or self._decision is not None:
            raise ProtocolError(f"send() in state {self.state}")
        count = len(self.rcpt_to) if self._config.lmtp else 1
        if isinstance(response, Response):
            replies: Sequence[Response] = (response,) * count
        else:
            replies = response
            if len(replies) != count:
                raise ProtocolError(f"send() needs {count} replies, got {len(replies)}")
        for reply in replies:
            self._reply(reply)
        self._reset_transaction()
        self.state = S_COMMAND
        if any(reply.is_success for reply in replies):
            # Postfix: the junk command count is reset after mail is delivered, and the hard
            # error limit counts errors "without delivering mail".
            self._errors = 0
            self._junk = 0

    def decide(self, response: Response | None) -> None:
        """Answer a HELO/EHLO, MAIL or RCPT held for a hook (``hook_*`` in the config).

        None (or a 2xx reply, sent instead of the default text) accepts the command; a 4xx or
        5xx reply refuses it and counts as an error (``max_errors``), so that refusing every
        RCPT does not give a client endless tries. Refusing one recipient leaves the
        transaction as it was.
        """
        accept = self._decision
        if accept is None or self.state is not State.AWAIT_REPLY:
            raise ProtocolError(f"decide() in state {self.state}")
        self._decision = None
        self.state = State.COMMAND
        if response is None or response.is_success:
            accept(response)
            return
        self._reply(response)
        self._count_errors(1)

    def _hold(self, event: Event, accept: Callable[[Response | None], None]) -> Event:
        self._decision = accept
        self.state = State.AWAIT_REPLY
        return event

    def sasl_challenge(self, line: bytes) -> None:
        """Send a ``334`` challenge line (``SaslChallenge.wire()``); the next line is for AUTH."""
        if self.state is not State.AWAIT_REPLY or self._decision is not None:
            raise ProtocolError(f"sasl_challenge() in state {self.state}")
        self._out.append(line)
        self.state = State.AUTH

    def auth_done(self, response: Response, identity: str | None = None) -> None:
        """End the AUTH exchange with ``response``; ``identity`` on success (235)."""
        if self.state is not State.AWAIT_REPLY or self._decision is not None:
            raise ProtocolError(f"auth_done() in state {self.state}")
        self._reply(response)
        self.state = State.COMMAND
        if identity is not None and response.is_success:
            self.authenticated = identity

    def close(self, response: Response | None = None) -> None:
        """Queue an optional final reply (e.g. 421) and stop parsing input."""
        if response is not None:
            self._reply(response)
        self.state = State.CLOSED
        self._buf.clear()
        self._pos = 0
        self._reader = None

    def tls_established(self) -> None:
        """The STARTTLS handshake succeeded: start over as after connecting (RFC 3207 4.2)."""
        if self.state is not State.STARTTLS:
            raise ProtocolError(f"tls_established() in state {self.state}")
        self.tls_active = True
        self.helo = ""
        self.esmtp = False
        self.authenticated = None
        self._reset_transaction()
        self.state = State.COMMAND

    @property
    def idle(self) -> bool:
        """Between commands with nothing buffered: a safe point to close (shutdown)."""
        return (
            self.state is State.COMMAND
            and self._pos >= len(self._buf)
            and not self._discarding
            and self._pending is None
        )

    @property
    def buffered(self) -> int:
        """Input bytes held, not yet parsed (e.g. commands pipelined while a reply is owed)."""
        return len(self._buf) - self._pos

    @property
    def in_transaction(self) -> bool:
        """MAIL was accepted and the transaction has not ended."""
        return self.mail_from is not None

    @property
    def message_reader(self) -> DataReader | None:
        """The reader of the message being received (DATA or BDAT), or None between messages.

        A driver that streams long messages out calls its ``drain()`` and keeps the pieces;
        the ``Message`` event then carries only the bytes not drained, so
        the message is the drained pieces, in order, followed by ``Message.data``. The verdict
        is the same as without draining: when the message is refused (too long, bare CR or
        LF, NUL) or the transaction ends early, no ``Message`` comes and the reader is
        replaced (None, or a new message's), and the driver drops what it took.
        """
        return self._reader

    def _reset_transaction(self) -> None:
        self.mail_from = None
        self.rcpt_to = []
        self.utf8 = False
        self.body_type = ""
        self.mail_auth = None
        self._reader = None
        self._chunking = False
        self.dsn_ret = None
        self.dsn_envid = None
        self.rcpt_dsn = []
        self.requiretls = False

    # ------------------------------------------------------------------ input
    def receive_data(self, data: bytes) -> None:
        """Hand over bytes from the client; ``b""`` means the client closed its side."""
        if not data:
            self._eof = True
            return
        if self.state is S_CLOSED or self.state is S_STARTTLS:
            return  # RFC 3207 5: plaintext after STARTTLS is never acted on
        if self._sync and self._config.forbid_unauth_pipelining:
            # The client did not wait for a reply it must wait for (RFC 2920 3.1); after DATA
            # these bytes must not reach the reader. next_event() reports it.
            self._violation = True
            return
        try:
            self._receive(data)
        except Exception:  # invariant 2: a bug must not take the connection down silently
            self._internal_error(in_command=False)

    def _receive(self, data: bytes) -> None:
        if self.state is S_DATA and self._reader is not None and self._pos >= len(self._buf):
            # Hot path: message bytes go straight to the reader, without the command buffer.
            used = self._reader.feed(data)
            if self._reader.done:
                self._buf = bytearray(data[used:])
                self._pos = 0
                self._finish_data()
            return
        if self.state is S_BDAT and self._pos >= len(self._buf):
            # Hot path for chunk bytes: straight to the reader (or dropped), no buffer copy.
            take = min(self._chunk_left, len(data))
            self._chunk_bytes(data if take == len(data) else data[:take])
            if take == len(data):
                return
            data = data[take:]  # the chunk ended: the rest is the next command
        if self._pos > 65536:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data
        if (
            self.state is not S_DATA
            and self.state is not S_BDAT
            and len(self._buf) - self._pos > _MAX_PIPELINED
        ):
            # Input piles up while a reply is owed: a client that floods us is dropped.
            self.close(_TOO_MUCH_INPUT)

    def next_event(self) -> Event | NeedData:
        """Process buffered input until something happens.

        Returns:
            The next event, or ``NEED_DATA`` when more input is needed.
        """
        if (
            self._pos >= len(self._buf)
            and self._pending is None
            and not self._violation
            and not self._eof
            and self.state is not S_BDAT
        ):
            # Nothing buffered, nothing owed: what _next_event would conclude (BDAT excepted:
            # an empty chunk ends without input). The driver asks once more after every event.
            return NEED_DATA
        while True:
            in_command = self.state is S_COMMAND
            try:
                return self._next_event()
            except Exception:  # invariant 2: the last resort (see _state.py)
                event = self._internal_error(in_command=in_command)
                if event is not None:
                    return event

    def _internal_error(self, *, in_command: bool) -> CloseConnection | None:
        """Turn a bug into a reply: 451 and go on after a command, else 421 and close."""
        self._internal_errors += 1
        if self._internal_errors == 1:
            _log.exception("internal error in the SMTP protocol core (state %s)", self.state)
        if in_command and self.state is State.COMMAND and self._internal_errors <= 3:
            # The command line was consumed before its handler ran: answer it and go on.
            self._reset_transaction()
            self._reply(R.ERROR_LOCAL_PROCESSING)
            if not self._count_errors(1):
                return None
            return CloseConnection("too many errors")
        if self.state is not State.CLOSED:
            self.close(_INTERNAL_ERROR_CLOSE)
        self._pending = None
        return CloseConnection("internal error")

    def _count_errors(self, count: int) -> bool:
        """Add ``count`` error replies; at ``max_errors`` queue 421 and close (True)."""
        if not count:
            return False
        self._errors += count
        limit = self._config.max_errors
        if limit and self._errors >= limit and self.state is not S_CLOSED:
            # Postfix smtpd_hard_error_limit: "421 4.7.0 Error: too many errors".
            self.close(R.ERROR_TOO_MANY_ERRORS)
            return True
        return False

    def _next_event(self) -> Event | NeedData:
        while True:
            pending = self._pending
            if pending is not None:
                self._pending = None
                return pending
            if self._violation:
                self._violation = False
                self.close(R.FAIL_IMPROPER_PIPELINING)
                return CloseConnection("improper command pipelining")
            state = self.state
            if state is S_COMMAND:
                mark = len(self._out)
                line = self._next_line()
                if line is None:
                    if len(self._out) != mark and self._errors_since(mark):
                        return CloseConnection("too many errors")
                    if self._eof:
                        self.state = State.CLOSED
                        return ConnectionClosed(in_data=False)
                    return NEED_DATA
                event = self._command(line)
                if self.state is not S_CLOSED:
                    if self._errors_since(mark):
                        return CloseConnection("too many errors")
                    if self._config.forbid_unauth_pipelining and self._improper(line):
                        self.close(R.FAIL_IMPROPER_PIPELINING)
                        return CloseConnection("improper command pipelining")
                if event is not None:
                    return event
            elif state is State.AUTH:
                sasl = self._next_line(_auth.SASL_LINE_MAX_LENGTH)
                if sasl is None:
                    if self._eof:
                        self.state = State.CLOSED
                        return ConnectionClosed(in_data=False)
                    return NEED_DATA
                self.state = State.AWAIT_REPLY
                return AuthResponse(None if sasl is _TOO_LONG else sasl)
            elif state is State.DATA:
                reader = self._reader
                assert reader is not None
                if self._pos < len(self._buf):
                    chunk = bytes(self._buf[self._pos :])
                    self._buf.clear()
                    self._pos = 0
                    used = reader.feed(chunk)
                    if reader.done:
                        self._buf = bytearray(chunk[used:])
                        self._finish_data()
                        continue
                if self._eof:
                    self.state = State.CLOSED
                    return ConnectionClosed(in_data=True)
                return NEED_DATA
            elif state is State.BDAT:
                available = len(self._buf) - self._pos
                if self._chunk_left and available:
                    take = min(self._chunk_left, available)
                    start = self._pos
                    self._chunk_bytes(bytes(self._buf[start : start + take]))
                    self._pos = start + take
                    if self._pos >= len(self._buf):
                        self._buf.clear()
                        self._pos = 0
                if not self._chunk_left:
                    self._end_chunk()
                    continue
                if self._eof:
                    self.state = State.CLOSED
                    return ConnectionClosed(in_data=True)
                return NEED_DATA
            else:
                return NEED_DATA

    def _errors_since(self, mark: int) -> bool:
        """Count the error replies queued since ``mark``; True when that closed the session."""
        out = self._out
        new = len(out) - mark
        if new == 0 or (new == 1 and out[mark][0] not in _ERROR_CLASSES):
            return False  # the usual case: one reply per command line, not an error
        return self._count_errors(self._error_replies(mark))

    def _error_replies(self, mark: int) -> int:
        """How many of the replies queued since ``mark`` are errors (4xx or 5xx)."""
        out = self._out
        new = len(out) - mark
        if new == 1:  # the usual case: one reply per command line
            return 1 if out[mark][0] in _ERROR_CLASSES else 0
        return sum(1 for i in range(mark, len(out)) if out[i][0] in _ERROR_CLASSES)

    def _improper(self, line: bytes) -> bool:
        """After ``line`` was handled: did the client send on where it had to wait?"""
        if self.state is S_STARTTLS:
            return False  # RFC 3207 5: what followed was discarded, as always
        if self.esmtp and not (line[:4].upper() in _LAST_IN_GROUP and line[4:5] in (b"", b" ")):
            return False  # PIPELINING is in effect and the command may be followed
        if self._pos < len(self._buf):
            return True
        self._sync = True  # more input before data_to_send() is improper as well
        return False

    def _next_line(self, sasl_limit: int = 0) -> bytes | None:
        # With sasl_limit, an over-long line is not answered here but returned as _TOO_LONG.
        buf = self._buf
        limit = (sasl_limit or self._config.max_line_length) + 2
        while True:
            start = self._pos
            end = buf.find(b"\n", start)
            if end < 0:
                if len(buf) - start > limit:
                    # RFC 5321 4.5.3.1.4: remember only that the line is too long.
                    self._discarding = True
                    buf.clear()
                    self._pos = 0
                return None
            too_long = self._discarding or end + 1 - start > limit
            line = b"" if too_long else bytes(buf[start:end])
            self._pos = end + 1
            if self._pos >= len(buf):
                buf.clear()
                self._pos = 0
            if too_long:
                self._discarding = False
                if sasl_limit:
                    return _TOO_LONG
                self._reply(R.FAIL_LINE_TOO_LONG)
                continue
            return line[:-1] if line.endswith(b"\r") else line

    # --------------------------------------------------------------- commands
    def _command(self, raw: bytes) -> Event | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Not a parameter error but an unreadable command: 500 5.5.2, as Postfix answers.
            self._reply(R.FAIL_BAD_UTF8)
            return None
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        try:
            handler = _DISPATCH.get(verb)
            if handler is None:
                return self._unknown(verb)
            return handler(self, arg)
        except CommandSyntaxError as exc:
            self._reply(exc.response)
            return None

    def _unknown(self, verb: str) -> Event | None:
        if verb in _NOT_IMPLEMENTED:
            self._reply(R.FAIL_COMMAND_NOT_IMPLEMENTED)
            return None
        self._unrecognized += 1
        if self._unrecognized >= self._config.max_unrecognized_commands:
            self.close(R.FAIL_MAX_UNRECOGNIZED_CMD)
            return CloseConnection("too many unrecognized commands")
        self._reply(R.FAIL_UNRECOGNIZED_CMD)
        return None

    def _helo(self, arg: str) -> Event | None:
        if self._config.lmtp:
            self._reply(_LMTP_NEEDS_LHLO)
            return None
        return self._greet(arg, extended=False)

    def _ehlo(self, arg: str) -> Event | None:
        if self._config.lmtp:
            self._reply(_LMTP_NEEDS_LHLO)
            return None
        return self._greet(arg, extended=True)

    def _lhlo(self, arg: str) -> Event | None:
        if not self._config.lmtp:
            return self._unknown("LHLO")
        return self._greet(arg, extended=True)  # RFC 2033 4.1: LHLO is EHLO for LMTP

    def ehlo_keywords(self) -> list[str]:
        """The extensions the EHLO (or LHLO) reply advertises on this connection, in order."""
        cfg = self._config
        lines = [f"SIZE {cfg.max_size}", "8BITMIME", "PIPELINING", "CHUNKING"]
        lines += ["SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if cfg.dsn:
            lines.append("DSN")
        if cfg.offer_requiretls and self.tls_active:
            lines.append("REQUIRETLS")  # RFC 8689 4: only where TLS is in effect
        if cfg.tls_available and not self.tls_active:
            lines.append("STARTTLS")
        if cfg.auth_mechanisms and (self.tls_active or cfg.auth_insecure):
            lines.append("AUTH " + " ".join(cfg.auth_mechanisms))
        if self.xclient:
            lines.append("XCLIENT " + " ".join(sorted(_XCLIENT_ATTRS)))
        return lines

    def _greet(self, arg: str, *, extended: bool) -> Event | None:
        name = parse_domain_arg(arg, utf8=extended)
        self._reset_transaction()  # RFC 5321 4.1.4: HELO/EHLO implies RSET
        if self._config.hook_helo:
            # Until the hook accepts, the client has no (new) HELO name.
            self.helo = ""
            self.esmtp = False
            return self._hold(Greeted(name, extended), lambda r: self._greeted(name, extended, r))
        self._greeted(name, extended, None)
        return Greeted(name, extended)

    def _greeted(self, name: str, extended: bool, response: Response | None) -> None:
        self.helo = name
        self.esmtp = extended
        cfg = self._config
        if not extended:
            if response is not None:
                self._reply(response)
            else:
                self._out.append(f"250 {cfg.hostname}\r\n".encode())
            return
        first = response.text if response is not None else f"{cfg.hostname} greets {name}"
        lines = [first, *self.ehlo_keywords()]
        last = len(lines) - 1
        self._out.append(
            "".join(f"250{' ' if i == last else '-'}{t}\r\n" for i, t in enumerate(lines)).encode()
        )

    def _mail(self, arg: str) -> Event | None:
        if not self.helo:
            self._reply(R.FAIL_HELO_REQUIRED)
            return None
        if self._config.require_tls and not self.tls_active:
            self._reply(R.FAIL_TLS_REQUIRED)
            return None
        if self._config.auth_required and self.authenticated is None:
            self._reply(AUTH_REQUIRED)
            return None
        if self.mail_from is not None:
            self._reply(R.FAIL_NESTED_MAIL_CMD)
            return None
        try:
            path, rest = split_path_and_params(arg, "FROM:")
        except CommandSyntaxError as exc:
            raise _as_sender_error(exc) from None
        params = parse_params(rest)
        utf8 = "SMTPUTF8" in params
        body = ""
        ret: ReturnContent | None = None
        envid: str | None = None
        requiretls = False
        mail_auth: str | None = None
        for key, value in params.items():
            if key == "SIZE":
                # RFC 1870 6.3: a declared size over the limit is refused at MAIL.
                # isdigit() alone is true for "²" and other digits int() refuses.
                if value is None or not (value.isascii() and value.isdigit()):
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
                if int(value) > self._config.max_size:
                    self._reply(R.FAIL_MESSAGE_SIZE_EXCEEDED)
                    return None
            elif key == "BODY":
                if value is None or value.upper() not in ("7BIT", "8BITMIME"):
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
                body = value.upper()
            elif key == "SMTPUTF8":
                if value is not None:
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
            elif key == "RET" and self._config.dsn:
                ret = parse_ret(value)
            elif key == "ENVID" and self._config.dsn:
                envid = parse_envid(value)
            elif key == "REQUIRETLS" and self._config.offer_requiretls:
                if value is not None:
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
                if not self.tls_active:
                    self._reply(_REQUIRETLS_NEEDS_TLS)
                    return None
                requiretls = True
            elif key == "AUTH" and self._config.auth_mechanisms:
                # RFC 4954 5: xtext; from a client that has not authenticated, AUTH=<>.
                if value is None:
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
                try:
                    mail_auth = _auth.mail_auth_param(
                        value, authenticated=self.authenticated is not None
                    )
                except ValueError:
                    raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR) from None
            else:
                # RFC 5321 4.1.1.11 / RFC 3461 4: DSN parameters without dsn land here too.
                self._reply(R.FAIL_UNKNOWN_PARAMETER)
                return None
        try:
            address = parse_path(path, utf8=utf8, allow_null=True, allow_postmaster=False)
        except CommandSyntaxError as exc:
            raise _as_sender_error(exc) from None
        dsn = (ret, envid, requiretls)
        if self._config.hook_mail:
            return self._hold(
                MailFrom(address, params),
                lambda r: self._mail_accepted(address, utf8, body, mail_auth, dsn, r),
            )
        self._mail_accepted(address, utf8, body, mail_auth, dsn, None)
        return MailFrom(address, params)

    def _mail_accepted(
        self,
        address: Address,
        utf8: bool,
        body: str,
        mail_auth: str | None,
        dsn: tuple[ReturnContent | None, str | None, bool],
        response: Response | None,
    ) -> None:
        self.mail_from = address
        self.utf8 = utf8
        self.body_type = body
        self.mail_auth = mail_auth
        self.dsn_ret, self.dsn_envid, self.requiretls = dsn
        self._reply(R.SUCCESS_MAIL_CMD if response is None else response)

    def _rcpt(self, arg: str) -> Event | None:
        if self.mail_from is None:
            self._reply(R.FAIL_NO_SENDER_RCPT_CMD)
            return None
        path, rest = split_path_and_params(arg, "TO:")
        params = parse_params(rest)
        dsn = _NO_DSN
        if params:
            if not self._config.dsn or not params.keys() <= {"NOTIFY", "ORCPT"}:
                self._reply(R.FAIL_UNKNOWN_PARAMETER)
                return None
            notify = params.get("NOTIFY", "")
            orcpt = params.get("ORCPT", "")
            dsn = RecipientDSN(
                None if notify == "" else parse_notify(notify),
                None if orcpt == "" else parse_orcpt(orcpt, utf8=self.utf8),
            )
        address = parse_path(path, utf8=self.utf8, allow_null=False, allow_postmaster=True)
        if len(self.rcpt_to) >= self._config.max_recipients:
            self._reply(R.ERROR_TOO_MANY_RECIPIENTS)  # RFC 5321 4.5.3.1.10
            return None
        if self._config.hook_rcpt:
            return self._hold(
                RcptTo(address, params), lambda r: self._rcpt_accepted(address, dsn, r)
            )
        self.rcpt_to.append(address)
        self.rcpt_dsn.append(dsn)
        self._reply(R.SUCCESS_RCPT_CMD)
        return RcptTo(address, params)

    def _rcpt_accepted(
        self, address: Address, dsn: RecipientDSN, response: Response | None
    ) -> None:
        self.rcpt_to.append(address)
        self.rcpt_dsn.append(dsn)
        self._reply(R.SUCCESS_RCPT_CMD if response is None else response)

    def _data(self, arg: str) -> Event | None:
        if arg.strip():
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        if self.mail_from is None:
            self._reply(R.FAIL_NO_SENDER_DATA_CMD)
            return None
        if not self.rcpt_to:
            self._reply(R.FAIL_NO_RECIPIENTS_DATA_CMD)
            return None
        if self._chunking:
            self._reply(_DATA_AFTER_BDAT)  # RFC 3030 2: no mixing in one transaction
            return None
        self._reply(R.SUCCESS_DATA_CMD)
        cfg = self._config
        self._reader = DataReader(cfg.max_size, cfg.normalize_line_endings, cfg.allow_nul)
        self.state = State.DATA
        return None

    def _finish_data(self) -> None:
        reader = self._reader
        assert reader is not None
        assert self.mail_from is not None
        try:
            data = reader.result()
        except LimitError:
            self._refuse_message(R.FAIL_MESSAGE_SIZE_EXCEEDED)
        except BareLineEndingError:
            self._refuse_message(R.FAIL_BARE_LINE_ENDING)
        except NulByteError:
            self._refuse_message(R.FAIL_NUL_IN_DATA)
        else:
            self.state = State.AWAIT_REPLY
            self._reader = None
            self._pending = Message(
                self.mail_from,
                tuple(self.rcpt_to),
                data,
                self.utf8,
                self.body_type,
                self.dsn_ret,
                self.dsn_envid,
                tuple(self.rcpt_dsn),
                self.requiretls,
                self._chunking,
            )

    def _refuse_message(self, response: Response) -> None:
        """The core refuses the whole message; the transaction ends.

        One reply, or with LMTP one per recipient (RFC 2033 4.2: else the client falls out
        of step).
        """
        for _ in range(len(self.rcpt_to) if self._config.lmtp else 1):
            self._reply(response)
        self._reset_transaction()
        self.state = State.COMMAND
        self._count_errors(1)  # closes at max_errors; the driver sees State.CLOSED

    # ------------------------------------------------------------------- BDAT
    def _bdat(self, arg: str) -> Event | None:
        """``BDAT <size> [LAST]`` (RFC 3030 2): read the chunk, then answer it."""
        words = arg.split(" ")
        size_text = words[0]
        last = len(words) == 2 and words[1].upper() == "LAST"
        # chunk-size = 1*DIGIT, ASCII only: Arabic-Indic five and superscript two are digits
        # to str.isdigit, not here.
        if (
            not (len(words) == 1 or last)
            or not size_text
            or not size_text.isascii()
            or not size_text.isdigit()
        ):
            self.close(_BDAT_MALFORMED)
            return CloseConnection("malformed BDAT")
        cfg = self._config
        size = int(size_text) if len(size_text) <= _MAX_SIZE_DIGITS else cfg.max_size + 1
        if size > cfg.max_size:
            self.close(_BDAT_TOO_BIG)
            return CloseConnection("BDAT chunk over the size limit")
        if size == 0 and not last and (closed := self._junk_command()) is not None:
            return closed
        refusal: Response | None = None
        if not self.esmtp:
            refusal = _BDAT_NEEDS_EHLO  # CHUNKING is an EHLO extension
        elif self.mail_from is None:
            refusal = _BDAT_NEEDS_MAIL
        elif not self.rcpt_to:
            refusal = _BDAT_NEEDS_RCPT
        elif self._reader is None:
            self._reader = DataReader(
                cfg.max_size, cfg.normalize_line_endings, cfg.allow_nul, bdat=True
            )
            self._chunking = True
        self._chunk_refusal = refusal
        self._chunk_left = self._chunk_size = size
        self._chunk_last = last
        self.state = State.BDAT
        return None

    def _chunk_bytes(self, data: bytes) -> None:
        """Octets of the current chunk: to the reader, or dropped when the chunk is refused."""
        self._chunk_left -= len(data)
        if self._chunk_refusal is None and self._reader is not None:
            self._reader.feed(data)

    def _end_chunk(self) -> None:
        """The chunk was read to its end: queue its reply, or the Message for BDAT LAST."""
        self.state = State.COMMAND
        refusal, self._chunk_refusal = self._chunk_refusal, None
        if refusal is not None:
            self._reply(refusal)
            self._count_errors(1)
            return
        reader = self._reader
        assert reader is not None
        if reader.size > self._config.max_size:
            # RFC 3030 2 / RFC 1870: over the limit across chunks; the transaction is over.
            # Later chunks the client pipelined are read and refused (no transaction).
            self._refuse_message(R.FAIL_MESSAGE_SIZE_EXCEEDED)
            return
        if not self._chunk_last:
            self._out.append(f"250 2.0.0 {self._chunk_size} octets received\r\n".encode())
            return
        reader.finish()
        self._finish_data()

    def _junk_command(self) -> CloseConnection | None:
        """Count a junk command (NOOP, RSET, VRFY, HELP); over the limit, 421 and close."""
        self._junk += 1
        limit = self._config.max_junk_commands
        if limit and self._junk > limit:
            self.close(R.ERROR_TOO_MANY_JUNK_COMMANDS)
            return CloseConnection("too many junk commands")
        return None

    def _rset(self, arg: str) -> Event | None:
        if (closed := self._junk_command()) is not None:
            return closed
        if arg.strip():
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        self._reset_transaction()
        self._reply(R.SUCCESS_RESET_CMD)
        return None

    def _noop(self, arg: str) -> Event | None:
        if (closed := self._junk_command()) is not None:
            return closed
        self._reply(R.SUCCESS_NOOP_CMD)
        return None

    def _vrfy(self, arg: str) -> Event | None:
        if (closed := self._junk_command()) is not None:
            return closed
        if not arg.strip():
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        self._reply(R.SUCCESS_VERIFY_CMD)
        return None

    def _help(self, arg: str) -> Event | None:
        if (closed := self._junk_command()) is not None:
            return closed
        self._reply(_HELP)
        return None

    def _auth(self, arg: str) -> Event | None:
        cfg = self._config
        if not cfg.auth_mechanisms:
            return self._unknown("AUTH")  # 502, as before AUTH existed
        if not (self.tls_active or cfg.auth_insecure):
            self._reply(_auth.AUTH_NOT_OFFERED)  # RFC 4954 6: 538 5.7.11
            return None
        if not self.esmtp:
            self._reply(_AUTH_NEEDS_EHLO)  # AUTH is an ESMTP extension, offered in EHLO
            return None
        if self.authenticated is not None:
            self._reply(_auth.AUTH_ALREADY_DONE)  # RFC 4954 4: 503 after a successful AUTH
            return None
        if self.mail_from is not None:
            self._reply(_auth.AUTH_IN_TRANSACTION)
            return None
        parts = arg.split(" ")
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        mechanism = parts[0].upper()
        if mechanism not in cfg.auth_mechanisms:
            self._reply(_auth.AUTH_UNKNOWN_MECHANISM)
            return None
        self.state = State.AWAIT_REPLY
        return AuthRequest(mechanism, parts[1] if len(parts) == 2 else None)

    def _quit(self, arg: str) -> Event | None:
        self.close(R.SUCCESS_QUIT_CMD)
        return CloseConnection("quit")

    def _starttls(self, arg: str) -> Event | None:
        if not self._config.tls_available:
            self._reply(R.FAIL_COMMAND_NOT_IMPLEMENTED)
            return None
        if arg.strip():
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        if self.tls_active:
            self._reply(R.FAIL_BAD_SEQUENCE_ALREADY_TLS)
            return None
        self._reply(R.SUCCESS_START_TLS_CMD)
        discarded = len(self._buf) - self._pos
        self._buf.clear()
        self._pos = 0
        self.state = State.STARTTLS
        return StartTLS(discarded)

    def _xclient(self, arg: str) -> Event | None:
        if self.xclient is None:
            return self._unknown("XCLIENT")
        if not self.xclient:
            self._reply(_XCLIENT_DENIED)
            return None
        if self.mail_from is not None:
            self._reply(_XCLIENT_IN_TRANSACTION)
            return None
        attrs: dict[str, str | None] = {}
        for token in arg.split():
            name, eq, value = token.partition("=")
            name = name.upper()
            if not eq or name not in _XCLIENT_ATTRS:
                raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
            decoded = xtext_decode(value)
            if decoded.upper() == "[UNAVAILABLE]":
                attrs[name] = None
            elif (decoded.upper() == "[TEMPUNAVAIL]" and name == "NAME") or _xclient_valid(
                name, decoded
            ):
                attrs[name] = decoded
            else:
                self._reply(_XCLIENT_BAD_VALUE)
                return None
        if not attrs:
            raise CommandSyntaxError(R.FAIL_SYNTAX_ERROR)
        # Postfix XCLIENT_README: the session starts over and the server greets again.
        self._reset_transaction()
        self.helo = attrs.get("HELO") or ""
        proto = (attrs.get("PROTO") or "").upper()
        self.esmtp = proto == "ESMTP"
        self.greeting()
        return XClient(attrs)


_NO_DSN = RecipientDSN()

_DISPATCH = {
    "HELO": Connection._helo,
    "EHLO": Connection._ehlo,
    "LHLO": Connection._lhlo,
    "BDAT": Connection._bdat,
    "MAIL": Connection._mail,
    "RCPT": Connection._rcpt,
    "DATA": Connection._data,
    "RSET": Connection._rset,
    "NOOP": Connection._noop,
    "VRFY": Connection._vrfy,
    "HELP": Connection._help,
    "QUIT": Connection._quit,
    "STARTTLS": Connection._starttls,
    "XCLIENT": Connection._xclient,
    "AUTH": Connection._auth,
}
