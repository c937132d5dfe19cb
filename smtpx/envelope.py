"""Envelope: one SMTP transaction as the handler sees it, and TLSInfo about its connection."""

from __future__ import annotations

import base64
import datetime
import itertools
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from .address import Address
from .mail import Mail

__all__ = ["Envelope", "TLSInfo", "new_envelope_id"]

# RFC 5322 2.2: field-name = 1*ftext, ftext = %d33-57 / %d59-126
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
# Characters refused anywhere in a prepended value: every C0 control but TAB (CR and LF
# appear only as folds, checked apart), DEL and the C1 controls (U+0085 is a line break to
# some readers), the Unicode line and paragraph separators, the bidi controls that reorder
# what a person reads in a log or a mail client (U+202E), and lone surrogates.
_BAD_CHAR = re.compile(
    r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
    r"\ud800-\udfff]"
)

_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))
_MACHINE = os.urandom(3)
_pid = (os.getpid() & 0xFFFF).to_bytes(2, "big")


def _after_fork() -> None:
    global _pid
    _pid = (os.getpid() & 0xFFFF).to_bytes(2, "big")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)  # workers must not share ids


def new_envelope_id() -> str:
    """A 20-character, time-ordered, unique id (rs/xid layout, as the Go package uses).

    4 bytes of seconds, 3 random machine bytes, 2 of the pid and a 3-byte counter, in
    base32hex (RFC 4648 7), lowercase.
    """
    raw = (
        int(time.time()).to_bytes(4, "big")
        + _MACHINE
        + _pid
        + (next(_counter) & 0xFFFFFF).to_bytes(3, "big")
    )
    return base64.b32hexencode(raw)[:20].decode("ascii").lower()


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """The TLS state of a connection.

    Attributes:
        version: Protocol version, e.g. ``"TLSv1.3"``.
        cipher: Cipher suite name.
        bits: Secret bits of the cipher.
        peer_cert: The client's certificate as ``ssl.SSLSocket.getpeercert()`` returns it, or
            None when the client sent none (or it was not verified).
        server_name: The SNI name the client asked for, if any.
    """

    version: str
    cipher: str
    bits: int
    peer_cert: dict[str, Any] | None = None
    server_name: str | None = None


class Envelope:
    """One mail transaction: who sent what to whom, over which connection.

    The handler receives it after DATA. ``data`` holds the message exactly as the client sent
    it after dot-unstuffing, CRLF line endings included, with any headers that middleware
    prepended in front.

    Attributes:
        remote_addr: The client's ``(ip, port)``; behind PROXY or XCLIENT, the address the
            proxy reported, not the proxy's own.
        local_addr: The ``(ip, port)`` the client connected to (PROXY: its destination).
        hostname: The server's name, as in its greeting.
        helo: The name the client gave in HELO or EHLO.
        esmtp: True if the client greeted with EHLO (RFC 5321 4.1.1.1).
        tls: The TLS session the message came over, or None for plaintext.
        mail_from: The reverse-path of ``MAIL FROM``; ``Address("")`` for the null sender
            ``<>`` (bounces).
        rcpt_to: The accepted recipients, in the order of the RCPT commands.
        utf8: True if MAIL FROM carried ``SMTPUTF8`` (RFC 6531).
        body_type: The ``BODY=`` parameter of MAIL FROM (``7BIT``, ``8BITMIME``), or "".
        connection_id: The number of the connection within this server, as in the log lines.
        received_at: When the envelope was made, at the end of DATA (UTC).
        error: An exception that middleware recorded for this message (``recover`` puts the
            handler's here), or None.
        values: Free-form per-message values for middleware (Go keeps these in a context):
            ``"proxy"`` holds the PROXY header and ``"xclient"`` the XCLIENT attributes.
        authenticated: The identity SMTP AUTH established on the connection (what the
            ``Authenticator`` returned), or None without AUTH (RFC 4954).
        mail_auth: The mailbox of MAIL FROM's ``AUTH=`` parameter, decoded from xtext; None
            for ``AUTH=<>``, without the parameter, or from a client that did not
            authenticate (RFC 4954 5).
    """

    __slots__ = (
        "_data",
        "_envelope_id",
        "_joined",
        "_trace",
        "authenticated",
        "body_type",
        "connection_id",
        "error",
        "esmtp",
        "helo",
        "hostname",
        "local_addr",
        "mail_auth",
        "mail_from",
        "rcpt_to",
        "received_at",
        "remote_addr",
        "tls",
        "utf8",
        "values",
    )

    def __init__(
        self,
        *,
        remote_addr: tuple[str, int] = ("", 0),
        local_addr: tuple[str, int] = ("", 0),
        hostname: str = "",
        helo: str = "",
        esmtp: bool = False,
        tls: TLSInfo | None = None,
        mail_from: Address | None = None,
        rcpt_to: list[Address] | None = None,
        data: bytes = b"",
        utf8: bool = False,
        body_type: str = "",
        connection_id: int = 0,
        envelope_id: str | None = None,
        received_at: datetime.datetime | None = None,
    ) -> None:
        self.remote_addr = remote_addr
        self.local_addr = local_addr
        self.hostname = hostname
        self.helo = helo
        self.esmtp = esmtp
        self.tls = tls
        self.mail_from = mail_from
        self.rcpt_to: list[Address] = [] if rcpt_to is None else rcpt_to
        self._data = data
        self._trace: list[bytes] = []
        self._joined: bytes | None = None
        self.utf8 = utf8
        self.body_type = body_type
        self.connection_id = connection_id
        self._envelope_id = envelope_id
        self.received_at = (
            datetime.datetime.now(datetime.timezone.utc) if received_at is None else received_at
        )
        self.error: BaseException | None = None
        # RFC 4954: the identity AUTH established on this connection (None without AUTH),
        # and MAIL's AUTH= mailbox (None for <> or from a client that did not authenticate).
        self.authenticated: str | None = None
        self.mail_auth: str | None = None
        # Free-form per-message values for middleware (Go keeps these in a context).
        self.values: dict[str, Any] = {}

    @property
    def envelope_id(self) -> str:
        """A unique id of this transaction (20 characters, rs/xid style), made on first use."""
        if self._envelope_id is None:
            self._envelope_id = new_envelope_id()
        return self._envelope_id

    @property
    def remote_ip(self) -> str:
        """The client's IP address as text."""
        return self.remote_addr[0]

    @property
    def data(self) -> bytes:
        """The message: prepended headers, then the bytes the client sent."""
        if not self._trace:
            return self._data
        if self._joined is None:
            self._joined = b"".join([*reversed(self._trace), self._data])
        return self._joined

    @data.setter
    def data(self, value: bytes) -> None:
        self._data = value
        self._trace = []
        self._joined = None

    def __len__(self) -> int:
        return len(self._data) + sum(len(t) for t in self._trace)

    def prepend_header(self, name: str, value: str) -> None:
        r"""Put a header field on top of the message (trace fields, RFC 5321 4.4).

        Args:
            name: The field name, e.g. ``"Received"``.
            value: The field body. It may be folded with ``"\\r\\n "`` (or CRLF TAB), and
                each folded line must hold more than white space (RFC 5322 3.2.2: a line of
                white space alone is obsolete syntax, and some readers end the header there).

        Raises:
            ValueError: The name is not a valid field name (RFC 5322 2.2), or the value
                holds CR or LF outside a fold (header injection), a fold that leaves a line
                of white space only, a control character other than TAB (NUL, VT, FF, ESC,
                DEL, C1 controls such as U+0085), U+2028/U+2029, a bidi control (U+202A to
                U+202E, U+2066 to U+2069, U+200E, U+200F, U+061C), or a lone surrogate.
        """
        if not _FIELD_NAME.match(name):
            raise ValueError(f"invalid header field name: {name!r}")
        lines = value.split("\r\n")
        for i, line in enumerate(lines):
            if _BAD_CHAR.search(line):
                raise ValueError(
                    f"header value for {name} holds a control, line-break or bidi character"
                    " or a CR/LF outside a fold"
                )
            # RFC 5322 2.2.3: a fold is CRLF followed by WSP, with more than WSP after it.
            if i and (line[:1] not in (" ", "\t") or not line.strip(" \t")):
                raise ValueError(
                    f"header value for {name} has a fold without a white-space-led,"
                    " non-blank line after it"
                )
        sep = " " if value and value[0] not in " \t" else ""
        self._trace.append(f"{name}:{sep}{value}\r\n".encode())
        self._joined = None

    def mail(self) -> Mail:
        """Open the envelope: split the message into headers and body."""
        return Mail(self.data, utf8=self.utf8)

    def __repr__(self) -> str:
        return (
            f"<Envelope id={self.envelope_id} from={self.mail_from} "
            f"to={[str(r) for r in self.rcpt_to]} size={len(self)}>"
        )
