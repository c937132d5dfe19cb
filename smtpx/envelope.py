"""Envelope: one SMTP transaction as the handler sees it, and TLSInfo about its connection."""

from __future__ import annotations

import asyncio
import base64
import datetime
import errno
import io
import itertools
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ._spool import Spool, open_view, read_at
from .address import Address
from .dsn import RecipientDSN, ReturnContent
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

# os.sendfile cannot copy between these files (an old kernel, or a system that sends only to
# sockets): Envelope.write_to then copies in pieces.
_NO_SENDFILE = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP})
_COPY_PIECE = 1024 * 1024

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

    The handler receives it after DATA. The message is exactly what the client sent after
    dot-unstuffing, CRLF line endings included, with any headers that middleware prepended in
    front. A small message is held in memory; one past the server's ``spool_threshold`` (or
    past its ``max_memory`` for all messages in flight) is in a spool file (``spooled``).
    Read it either way with ``open()`` (a file object) or ``chunks()`` (async pieces); ``data``
    gives it as one ``bytes`` object, which for a spooled message means reading the whole file
    into memory.

    A spool file lives only while the handler runs: after the handler returns the server
    closes and removes it. A handler that wants to keep the file must copy it (or hard-link
    ``spool_path``) before it returns.

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
        lmtp: The message came over LMTP (RFC 2033).
        chunked: The message came by BDAT (RFC 3030).
        dsn_ret: The MAIL ``RET=`` value, ``"FULL"`` or ``"HDRS"``, or None (RFC 3461;
            ``Server(dsn=True)``).
        dsn_envid: The MAIL ``ENVID=`` value, decoded, or None.
        rcpt_dsn: One ``RecipientDSN`` (NOTIFY, ORCPT) per entry of ``rcpt_to``, in order.
        requiretls: MAIL carried REQUIRETLS (RFC 8689; ``Server(offer_requiretls=True)``).
    """

    __slots__ = (
        "_data",
        "_envelope_id",
        "_joined",
        "_skip",
        "_spool",
        "_trace",
        "authenticated",
        "body_type",
        "chunked",
        "connection_id",
        "dsn_envid",
        "dsn_ret",
        "error",
        "esmtp",
        "helo",
        "hostname",
        "lmtp",
        "local_addr",
        "mail_auth",
        "mail_from",
        "rcpt_dsn",
        "rcpt_to",
        "received_at",
        "remote_addr",
        "requiretls",
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
        lmtp: bool = False,
        chunked: bool = False,
        dsn_ret: ReturnContent | None = None,
        dsn_envid: str | None = None,
        rcpt_dsn: list[RecipientDSN] | None = None,
        requiretls: bool = False,
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
        # A spooled message is the prepended headers, then _data, then the spool file from
        # byte _skip on (replace_head() moves _skip when it rewrites the top of the file).
        self._spool: Spool | None = None
        self._skip = 0
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
        self.lmtp = lmtp
        self.chunked = chunked
        self.dsn_ret: ReturnContent | None = dsn_ret
        self.dsn_envid = dsn_envid
        # One per recipient, in rcpt_to order (an empty RecipientDSN() when none was given).
        self.rcpt_dsn: list[RecipientDSN] = (
            [RecipientDSN() for _ in self.rcpt_to] if rcpt_dsn is None else rcpt_dsn
        )
        self.requiretls = requiretls
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
        """The message as one object: prepended headers, then the bytes the client sent.

        For a spooled message (``spooled``) this reads the whole spool file into memory, once
        (the result is kept): it costs as much memory as the message is long, for as long as
        the envelope lives. Large-message handlers should use ``open()`` or ``chunks()``.
        Setting it replaces the message with the bytes given (in memory; prepended headers
        are dropped).
        """
        if self._joined is not None:
            return self._joined
        if self._spool is None:
            if not self._trace:
                return self._data
            self._joined = self._prefix()
        else:
            with self.open() as f:
                self._joined = f.read()
        return self._joined

    @data.setter
    def data(self, value: bytes) -> None:
        self._data = value
        self._trace = []
        self._joined = None
        self._spool = None
        self._skip = 0

    @property
    def spooled(self) -> bool:
        """True when the message is in a spool file, not in memory (see ``open()``)."""
        return self._spool is not None

    @property
    def spool_path(self) -> str | None:
        """The spool file's path while the handler runs (None for a message in memory).

        The file holds the message as the client sent it, without the prepended headers; it
        is removed when the handler returns, so link or copy it to keep it.
        """
        return None if self._spool is None else self._spool.path

    def _set_spool(self, spool: Spool) -> None:
        """Back the message with ``spool`` (the session's call, after DATA)."""
        self._spool = spool
        self._data = b""
        self._skip = 0
        self._joined = None

    def _prefix(self) -> bytes:
        """The in-memory front of the message: prepended headers, then ``_data``."""
        if not self._trace:
            return self._data
        return b"".join([*reversed(self._trace), self._data])

    def open(self) -> BinaryIO:
        """A readable, seekable binary file over the whole message; the caller closes it.

        Prepended headers come first, then the message. For a spooled message the file reads
        the spool from disk (with its own descriptor, valid after the handler returned);
        reading it is blocking I/O, so an async handler should read it in a worker thread
        (``asyncio.to_thread``) or use ``chunks()``.

        Raises:
            ValueError: The message was spooled and its spool file was removed already
                (``open()`` was first called after the handler returned).
        """
        spool = self._spool
        if spool is None:
            return io.BytesIO(self.data)
        return open_view(self._prefix(), spool, self._skip)

    async def chunks(self, size: int = 65536) -> AsyncIterator[bytes]:
        """The message in pieces of at most ``size`` bytes, prepended headers first.

        The disk reads of a spooled message run in a worker thread, never on the event loop.

        Args:
            size: Largest piece, in bytes (at least 1).

        Raises:
            ValueError: ``size`` is below 1, or the spool file was removed already.
        """
        if size < 1:
            raise ValueError("size must be at least 1")
        spool = self._spool
        data = self._prefix() if spool is not None else self.data
        for start in range(0, len(data), size):
            yield data[start : start + size]
        if spool is None:
            return
        loop = asyncio.get_running_loop()
        fd = spool.dup()  # valid even if the handler returns while this is being read
        try:
            offset, end = self._skip, spool.size
            while offset < end:
                piece = await loop.run_in_executor(
                    None, read_at, fd, min(size, end - offset), offset
                )
                if not piece:
                    break
                offset += len(piece)
                yield piece
        finally:
            os.close(fd)

    def write_to(self, out: BinaryIO) -> int:
        """Write the whole message to the binary file ``out``; return the bytes written.

        Blocking I/O: call it from a plain (threaded) handler or ``asyncio.to_thread``. For a
        spooled message written to a real file, the spool's bytes are copied by the kernel
        (``os.sendfile``), never through Python memory; otherwise in 1 MiB pieces. ``out`` is
        flushed before a kernel copy, and its file position is left after the message.

        Raises:
            OSError: Writing failed (e.g. a full disk); part of the message may be written.
            ValueError: The spool file was removed already (the handler returned).
        """
        spool = self._spool
        if spool is None:
            data = self.data
            out.write(data)
            return len(data)
        prefix = self._prefix()
        out.write(prefix)
        offset, end = self._skip, spool.size
        src = spool.dup()
        try:
            try:
                fd = out.fileno()
            except (AttributeError, OSError, io.UnsupportedOperation):
                fd = -1
            if fd >= 0 and hasattr(os, "sendfile"):
                out.flush()
                try:
                    while offset < end:
                        sent = os.sendfile(fd, src, offset, end - offset)
                        if not sent:
                            break
                        offset += sent
                except OSError as exc:
                    # NOTE: some systems send only to sockets (macOS: ENOTSOCK); nothing was
                    # copied then, and the pieces below do it. Any other error is the caller's.
                    if offset != self._skip or exc.errno not in _NO_SENDFILE:
                        raise
            while offset < end:
                piece = read_at(src, min(_COPY_PIECE, end - offset), offset)
                if not piece:
                    break
                out.write(piece)
                offset += len(piece)
        finally:
            os.close(src)
        return len(prefix) + offset - self._skip

    def __len__(self) -> int:
        size = len(self._data) + sum(len(t) for t in self._trace)
        if self._spool is not None:
            size += self._spool.size - self._skip
        return size

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes of the message (all of it when shorter); cheap when spooled.

        Middleware that only looks at the header section reads it this way instead of
        ``data``, e.g. ``head(max_header_bytes + 1)``.
        """
        spool = self._spool
        if spool is None:
            return self.data[:limit]
        prefix = self._prefix()
        if len(prefix) >= limit:
            return prefix[:limit]
        fd = spool.dup()
        try:
            rest = read_at(fd, min(limit - len(prefix), spool.size - self._skip), self._skip)
        finally:
            os.close(fd)
        return prefix + rest

    def replace_head(self, length: int, new: bytes) -> None:
        """Replace the first ``length`` bytes of the message with ``new``.

        The way to rewrite the header section (as read with ``head()``) of a spooled message
        without reading its body; prepended headers within ``length`` are replaced too.

        Raises:
            ValueError: ``length`` is negative or longer than the message.
        """
        if not 0 <= length <= len(self):
            raise ValueError("length must be within the message")
        spool = self._spool
        if spool is None:
            self.data = new + self.data[length:]
            return
        prefix = self._prefix()
        if length <= len(prefix):
            self._data = new + prefix[length:]
        else:
            self._skip += length - len(prefix)
            self._data = new
        self._trace = []
        self._joined = None

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
        """Open the envelope: split the message into headers and body.

        This holds the whole message in memory (it reads ``data``), spooled or not.
        """
        return Mail(self.data, utf8=self.utf8)

    def __repr__(self) -> str:
        return (
            f"<Envelope id={self.envelope_id} from={self.mail_from} "
            f"to={[str(r) for r in self.rcpt_to]} size={len(self)}>"
        )
