"""``Forward``: the handler and hooks that mirror each client transaction on a backend."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from smtpx._xtext import decode_xtext, encode_xtext
from smtpx.address import Address
from smtpx.envelope import Envelope
from smtpx.hooks import Params, SessionView
from smtpx.responses import PerRecipient, Response

from ._chunks import _message_chunks
from ._client import _Backend, _BackendError, _in_task, _Reply, _timeout
from ._pool import _Pool, _PoolExhausted
from ._url import BackendURL, parse_backend_url

log = logging.getLogger("smtpx.forward")

DEFAULT_TIMEOUT = 60.0
"""Seconds for a whole backend reply (and for connecting, and for a free pool slot)."""
DEFAULT_POOL_SIZE = 20
"""Backend connections open at once, per ``Forward`` (so per worker process)."""
DEFAULT_IDLE_TIMEOUT = 10.0
"""Seconds an unused pooled connection stays open."""
DEFAULT_MAX_REPLY_BYTES = 8192
"""Bytes in one backend reply, all lines together (RFC 5321 4.5.3.1.5: a line is 512)."""
DEFAULT_MAX_REPLY_LINES = 40
"""Lines in one backend reply (an EHLO reply is about a dozen)."""

FORWARD_FAILED = Response(451, "4.4.1", "Requested action aborted: backend not available")
"""The reply when the backend is unreachable, silent, too slow or broken (RFC 3463 4.4.1)."""
_MISMATCH = Response(451, "4.3.0", "Requested action aborted: recipients out of step")

_SWEEP_EVERY = 1.0


class _Txn:
    """One client transaction mirrored on one backend connection."""

    __slots__ = ("accepted", "backend", "busy", "gone", "session", "utf8")

    def __init__(self, session: SessionView, backend: _Backend, utf8: bool) -> None:
        self.session = session
        self.backend = backend
        self.utf8 = utf8
        self.accepted: list[Address] = []
        self.busy = True  # a hook of ours is running: the session's state is in flux
        self.gone = False  # the client left while a hook was running: that hook ends it


class Forward:
    """Relay each transaction to a backend as it happens (handler + hooks, see module doc).

    Args:
        url: ``smtp://host:port[?starttls=1]``, ``lmtp://host:port`` or
            ``lmtp+unix:///path``.
        timeout: Seconds for connecting, for each whole backend reply, for the backend to
            take each chunk of the message, and for a free pool slot; over it, ``451 4.4.1``.
        pool_size: At most this many backend connections at once (so at most this many
            transactions in flight); more wait up to ``timeout``.
        idle_timeout: Seconds before an unused pooled connection is closed.
        ehlo_name: The name sent in EHLO/LHLO (default ``localhost``).
        tls_context: For ``starttls=1``: the client context (default: system CAs, host name
            checked).
        max_reply_bytes: Bound on one backend reply, all lines; over it the backend counts
            as failed.
        max_reply_lines: Bound on the lines of one backend reply, likewise.

    Raises:
        ValueError: A bad URL or option.
    """

    def __init__(
        self,
        url: str | BackendURL,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        ehlo_name: str = "localhost",
        tls_context: ssl.SSLContext | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        max_reply_lines: int = DEFAULT_MAX_REPLY_LINES,
    ) -> None:
        self.url = url if isinstance(url, BackendURL) else parse_backend_url(url)
        if not timeout > 0 or pool_size < 1 or not idle_timeout > 0:
            raise ValueError("timeout and idle_timeout must be > 0, pool_size >= 1")
        if max_reply_bytes < 512 or max_reply_lines < 1:
            raise ValueError("max_reply_bytes must be >= 512 and max_reply_lines >= 1")
        self.timeout = float(timeout)
        self.pool_size = pool_size
        self.idle_timeout = float(idle_timeout)
        self.ehlo_name = ehlo_name
        self.tls_context = tls_context
        self._limits = (max_reply_bytes, max_reply_lines)
        self._txns: dict[int, _Txn] = {}
        self._inflight: dict[int, bool] = {}  # connection id -> left during its MAIL
        self._pool: _Pool | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Forward({str(self.url)!r})"

    # ------------------------------------------------------------------ connections
    def _the_pool(self) -> _Pool:
        # Made in the running loop (and after a --workers fork), never at construction.
        pool = self._pool
        if pool is None:
            pool = self._pool = _Pool(self)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return pool

    async def _connect(self) -> _Backend:
        url = self.url
        loop = asyncio.get_running_loop()
        backend = _Backend(url.lmtp, self._limits)
        await _in_task()  # for _timeout below
        try:
            async with _timeout(self.timeout):
                if url.path:
                    await loop.create_unix_connection(lambda: backend, url.path)
                else:
                    await loop.create_connection(lambda: backend, url.host, url.port)
        except TimeoutError:
            raise _BackendError(f"cannot connect to {url} within {self.timeout:g}s") from None
        except OSError as exc:
            raise _BackendError(f"cannot connect to {url}: {exc.strerror or exc}") from None
        try:
            greeting = await backend.read_reply(self.timeout)
            if greeting.code != 220:
                raise _BackendError(f"greeting {greeting.code}")
            await self._hello(backend)
            if url.starttls:
                if "STARTTLS" not in backend.extensions:
                    raise _BackendError("STARTTLS is not offered")
                reply = await backend.command("STARTTLS", self.timeout)
                if reply.code != 220:
                    raise _BackendError(f"STARTTLS answered {reply.code}")
                context = self.tls_context or ssl.create_default_context()
                async with _timeout(self.timeout):
                    await backend.start_tls(context, url.host)
                await self._hello(backend)  # RFC 3207 4.2: forget what was learnt before
        except TimeoutError:
            backend.close()
            raise _BackendError("TLS handshake timed out") from None
        except (OSError, ssl.SSLError) as exc:
            backend.close()
            raise _BackendError(f"TLS: {exc}") from None
        except BaseException:
            backend.close()
            raise
        return backend

    async def _hello(self, backend: _Backend) -> None:
        reply = await backend.command(
            f"{'LHLO' if backend.lmtp else 'EHLO'} {self.ehlo_name}", self.timeout
        )
        if reply.code != 250:
            raise _BackendError(f"{'LHLO' if backend.lmtp else 'EHLO'} answered {reply.code}")
        extensions: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, value = line.partition(" ")
            extensions[keyword.upper()] = value
        backend.extensions = extensions

    async def _sweep(self) -> None:
        """Close idle connections; give back those whose transaction ended without DATA."""
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            for key, txn in list(self._txns.items()):
                # The core forgot the transaction (RSET, HELO, a refused message...).
                if not txn.busy and txn.session.mail_from is None:
                    del self._txns[key]
                    self._background(self._end(txn))
            pool = self._pool
            if pool is not None:
                pool.sweep(time.monotonic(), self.idle_timeout)
                if not pool.open and not self._txns:
                    return  # started again by the next MAIL

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _end(self, txn: _Txn) -> None:
        """A transaction ended without a message: RSET and give back, or close."""
        pool, backend = self._the_pool(), txn.backend
        if backend.closed:
            pool.discard(backend)
            return
        try:
            reply = await backend.command("RSET", self.timeout)
        except _BackendError as exc:
            log.info("backend %s: RSET failed (%s); closing", self.url, exc)
            pool.discard(backend)
            return
        if reply.code == 250:
            pool.put(backend)
        else:
            pool.discard(backend)

    async def aclose(self) -> None:
        """Close every pooled connection (in use ones are closed when they come back)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for txn in self._txns.values():
            txn.backend.close()
        self._txns.clear()
        if self._pool is not None:
            self._pool.close()

    # ------------------------------------------------------------------ parameters
    def _mail_params(self, session: SessionView, params: Params, ext: dict[str, str]) -> str:
        out: list[str] = []
        for key, value in params.items():
            if key == "SIZE" and "SIZE" in ext and value is not None:
                out.append(f"SIZE={int(value)}")
            elif key == "BODY" and "8BITMIME" in ext and value is not None:
                out.append(f"BODY={'8BITMIME' if value.upper() == '8BITMIME' else '7BIT'}")
            elif key == "SMTPUTF8" and "SMTPUTF8" in ext:
                out.append("SMTPUTF8")
            elif key == "RET" and "DSN" in ext and value is not None:
                out.append(f"RET={'HDRS' if value.upper() == 'HDRS' else 'FULL'}")
            elif key == "ENVID" and "DSN" in ext and value is not None:
                out.append(f"ENVID={encode_xtext(decode_xtext(value, strict=True))}")
            elif key == "AUTH" and "AUTH" in ext:
                mailbox = None
                if session.authenticated is not None and value is not None and value != "<>":
                    decoded = decode_xtext(value)
                    if decoded.isprintable():
                        mailbox = decoded
                out.append(f"AUTH={'<>' if mailbox is None else encode_xtext(mailbox)}")
        return "".join(f" {p}" for p in out)

    @staticmethod
    def _rcpt_params(params: Params, ext: dict[str, str], utf8: bool) -> str:
        if not params or "DSN" not in ext:
            return ""
        from smtpx.protocol._dsn import parse_notify, parse_orcpt  # noqa: PLC0415 (rarely used)

        out: list[str] = []
        if params.get("NOTIFY"):
            out.append("NOTIFY=" + ",".join(parse_notify(params["NOTIFY"])))
        if params.get("ORCPT"):
            orcpt = parse_orcpt(params["ORCPT"], utf8=utf8)
            if orcpt.addr_type == "rfc822":
                out.append(f"ORCPT=rfc822;{encode_xtext(orcpt.address)}")
            elif "SMTPUTF8" in ext:
                out.append(f"ORCPT=utf-8;{_encode_unitext(orcpt.address)}")
        return "".join(f" {p}" for p in out)

    # ------------------------------------------------------------------ hooks
    async def mail(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        """MAIL: take a backend connection and send MAIL; its refusal is the client's."""
        cid = session.connection_id
        stale = self._txns.pop(cid, None)
        if stale is not None:
            await self._end(stale)
        self._inflight[cid] = False
        txn = None
        try:
            response, txn = await self._mail(session, address, params)
        finally:
            gone = self._inflight.pop(cid, False)
            if txn is not None and gone:
                # The client left while MAIL was on its way: never keep the connection.
                self._background(self._end(txn))
            elif txn is not None:
                txn.busy = False
                self._txns[cid] = txn
        return response

    async def _mail(
        self, session: SessionView, address: Address, params: Params
    ) -> tuple[Response | None, _Txn | None]:
        pool = self._the_pool()
        for attempt in (1, 2):
            try:
                backend = await pool.get()
            except _BackendError as exc:
                log.warning("backend %s: %s; MAIL gets 451 4.4.1", self.url, exc)
                return FORWARD_FAILED, None
            reused = backend.used
            txn = _Txn(session, backend, "SMTPUTF8" in params)
            try:
                line = f"MAIL FROM:<{address.address}>" + self._mail_params(
                    session, params, backend.extensions
                )
                reply = await backend.command(line, self.timeout)
                if reply.code == 421:
                    raise _BackendError("421 at MAIL")
            except _BackendError as exc:
                pool.discard(backend)
                # A pooled connection the backend closed meanwhile: one fresh try. Nothing
                # of the message was sent on it, so this cannot deliver twice.
                if reused and attempt == 1 and not isinstance(exc, _PoolExhausted):
                    log.info("backend %s: pooled connection failed at MAIL (%s)", self.url, exc)
                    continue
                log.warning("backend %s: %s; MAIL gets 451 4.4.1", self.url, exc)
                return FORWARD_FAILED, None
            except ValueError:  # a parameter that does not decode (the core checked them)
                pool.put(backend)
                return FORWARD_FAILED, None
            if reply.code // 100 == 2:
                return None, txn
            pool.put(backend)  # the refused MAIL left no transaction to reset
            return _relay(reply), None
        return FORWARD_FAILED, None  # pragma: no cover - the loop returns

    async def rcpt(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        """RCPT: send it on; the backend's refusal is the client's."""
        txn = self._txns.get(session.connection_id)
        if txn is None:
            return FORWARD_FAILED
        txn.busy = True
        try:
            backend = txn.backend
            try:
                line = f"RCPT TO:<{address.address}>" + self._rcpt_params(
                    params, backend.extensions, txn.utf8
                )
            except Exception:
                return FORWARD_FAILED
            try:
                reply = await backend.command(line, self.timeout)
                if reply.code == 421 or reply.code // 100 == 3:
                    raise _BackendError(f"{reply.code} at RCPT")
            except _BackendError as exc:
                log.warning("backend %s: %s; RCPT gets 451 4.4.1", self.url, exc)
                self._txns.pop(session.connection_id, None)
                self._the_pool().discard(backend)
                return FORWARD_FAILED
            if reply.code // 100 == 2:
                txn.accepted.append(address)
                return None
            return _relay(reply)
        finally:
            txn.busy = False
            if txn.gone and self._txns.get(session.connection_id) is txn:
                del self._txns[session.connection_id]
                self._background(self._end(txn))

    async def disconnect(self, session: SessionView, /) -> None:
        """The client left: end its transaction, if any."""
        cid = session.connection_id
        if cid in self._inflight:
            self._inflight[cid] = True  # MAIL is still on its way: mail() ends it
        txn = self._txns.get(cid)
        if txn is None:
            return
        if txn.busy:
            txn.gone = True  # one command at a time: the running hook ends it
            return
        del self._txns[cid]
        await self._end(txn)

    # ------------------------------------------------------------------ handler
    async def data(self, envelope: Envelope) -> Response:
        """Send the message; the backend's reply (one per recipient for LMTP) is the client's."""
        txn = self._txns.pop(envelope.connection_id, None)
        if txn is None:
            return FORWARD_FAILED
        txn.busy = True
        pool, backend = self._the_pool(), txn.backend
        if [a.address for a in txn.accepted] != [a.address for a in envelope.rcpt_to]:
            # Another hook refused a recipient the backend took: never deliver to it.
            log.error(
                "backend %s: recipients differ from the client's (is Forward the last hook?);"
                " message refused",
                self.url,
            )
            await self._end(txn)
            return _MISMATCH
        try:
            refused = await self._send_message(backend, envelope)
            if refused is not None:
                if refused.code // 100 in (4, 5) and refused.code != 421:
                    await self._end(txn)
                    return _relay(refused)
                raise _BackendError(f"{refused.code} to DATA or BDAT")
        except _BackendError as exc:
            log.warning("backend %s: %s; message gets 451 4.4.1", self.url, exc)
            pool.discard(backend)
            return FORWARD_FAILED
        if not backend.lmtp:
            try:
                reply = await backend.read_reply(self.timeout)
                if reply.code // 100 == 3:
                    raise _BackendError(f"{reply.code} after the message")
            except _BackendError as exc:
                log.warning("backend %s: %s; message gets 451 4.4.1", self.url, exc)
                pool.discard(backend)
                return FORWARD_FAILED
            if reply.code == 421:
                pool.discard(backend)
                return FORWARD_FAILED
            pool.put(backend)
            return _relay(reply)
        return await self._lmtp_replies(envelope, txn)

    async def _send_message(self, backend: _Backend, envelope: Envelope) -> _Reply | None:
        """DATA or BDAT; the refusal of DATA or of a BDAT before the last, else None."""
        chunking = "CHUNKING" in backend.extensions
        if not chunking:
            refused = await backend.command("DATA", self.timeout)
            if refused.code != 354:
                return refused
        if not envelope.spooled:
            # In memory: one write, no pieces to iterate over.
            await backend.send_whole(envelope.data, chunking, self.timeout)
            return None
        if chunking:
            return await backend.send_chunks(_message_chunks(envelope), self.timeout)
        await backend.send_message(_message_chunks(envelope), self.timeout)
        return None

    async def _lmtp_replies(self, envelope: Envelope, txn: _Txn) -> Response:
        pool, backend = self._the_pool(), txn.backend
        replies: list[Response] = []
        broken = False
        for rcpt in txn.accepted:
            if broken:
                replies.append(FORWARD_FAILED)
                continue
            try:
                reply = await backend.read_reply(self.timeout)
                if reply.code // 100 == 3 or reply.code == 421:
                    raise _BackendError(f"{reply.code} after the message")
                replies.append(_relay(reply))
            except _BackendError as exc:
                log.warning(
                    "backend %s: %s; 451 4.4.1 for <%s> and the recipients after it",
                    self.url,
                    exc,
                    rcpt.address,
                )
                broken = True
                replies.append(FORWARD_FAILED)
        if broken:
            pool.discard(backend)
        else:
            pool.put(backend)  # put() closes it if an extra reply is waiting
        if envelope.lmtp:
            return PerRecipient(replies)
        failures = [r for r in replies if not r.is_success]
        if not failures:
            return replies[0]
        if len(failures) < len(replies):
            log.warning(
                "backend %s: accepted %s but not %s; SMTP has one reply, so the client will"
                " retry (a duplicate for the accepted ones)",
                self.url,
                [a.address for a, r in zip(txn.accepted, replies, strict=True) if r.is_success],
                [a.address for a, r in zip(txn.accepted, replies, strict=True) if not r.is_success],
            )
        temporary = [r for r in failures if r.code // 100 == 4]
        return (temporary or failures)[0]


def _relay(reply: _Reply) -> Response:
    if reply.code // 100 not in (2, 4, 5):
        return FORWARD_FAILED
    return reply.response()


def _encode_unitext(address: str) -> str:
    # RFC 6533 3: utf-8-addr-unitext; "+", "=", "\\", space and controls as \\x{HEX}.
    return "".join(
        c if (c > "\x7f" or "\x21" <= c <= "\x7e") and c not in "+=\\" else f"\\x{{{ord(c):02X}}}"
        for c in address
    )
