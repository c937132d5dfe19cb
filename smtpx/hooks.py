"""Session hooks: decide at connect, HELO, MAIL and RCPT time, not only after DATA.

A handler (or any object passed in ``Server(hooks=...)``) may define any of these methods
besides ``data``; each may be ``async def`` or plain (a plain one runs in a worker thread,
as a plain handler function does):

* ``connect(session)``: before the greeting. A refusal (e.g. ``554 5.7.1``) is sent instead
  of the 220 greeting and the connection closes.
* ``helo(session, name)``: HELO or EHLO, with the name the client gave.
* ``mail(session, address, params)``: MAIL FROM, after smtpx's own checks.
* ``rcpt(session, address, params)``: each RCPT TO, after smtpx's own checks. Refusing one
  recipient does not end the transaction.
* ``disconnect(session)``: once, after the connection closed (whoever closed it); its return
  value is ignored, and one that raises is logged. It runs in its own task, after the
  session's last reply, so it may release what ``mail`` took (``smtpx.forward`` does).

Each returns None for smtpx's default reply, or a ``Response``: a 4xx or 5xx one refuses the
command, a 2xx one accepts it with that text. A hook that raises is logged and the client gets
``451 4.3.0``; so does one that returns anything else (``HandlerReturnError``). Raising
``ResponseError`` sends its reply. Several hook objects run in order and the first reply that
is not None wins. Replies to pipelined commands (RFC 2920) keep their order: smtpx reads the
next command only once the current one is answered.

``session`` is a read-only ``SessionView``. Middleware wraps ``data`` only.

Each hook is a ``typing.Protocol``, so that ``mypy --strict`` checks a handler class that is
assigned to one (``_: RcptHook = MyHandler()``), or to ``HookedHandler`` for all of them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from ._filters import FILTERED_RECIPIENT, RECIPIENT_DOMAIN_NOT_ALLOWED, SENDER_DOMAIN_NOT_ALLOWED
from .address import Address
from .envelope import TLSInfo
from .handler import Handler, HandlerReturnError
from .responses import Response

__all__ = [
    "HOOK_NAMES",
    "ConnectHook",
    "DisconnectHook",
    "HeloHook",
    "HookReply",
    "HookSet",
    "HookedHandler",
    "MailHook",
    "Params",
    "RcptHook",
    "SessionView",
    "check_hook_reply",
    "collect_hooks",
    "filter_recipient",
    "filter_recipient_domains",
    "sender_domains_whitelist",
]

Params: TypeAlias = dict[str, "str | None"]
"""ESMTP parameters of MAIL or RCPT: upper-case keyword to value (None for a bare keyword)."""

HookReply: TypeAlias = "Response | Awaitable[Response | None] | None"
"""What a hook returns: a reply or None, directly (plain function) or awaited (async def)."""

HOOK_NAMES = ("connect", "helo", "mail", "rcpt", "disconnect")


class SessionView(Protocol):
    """What a hook may read of its connection; nothing in it can be changed.

    Attributes:
        connection_id: Counts up from 1 per server.
        remote_addr: The client, as PROXY or XCLIENT reported it, else the TCP peer.
        local_addr: The address the client connected to.
        helo: The accepted HELO/EHLO name; "" before it (and in the ``helo`` hook itself).
        esmtp: The client greeted with EHLO.
        tls: The TLS layer, or None for plaintext.
        authenticated: The identity AUTH established, or None.
        mail_from: The transaction's sender once MAIL was accepted, else None.
        rcpt_to: The recipients accepted so far in this transaction.
    """

    @property
    def connection_id(self) -> int:
        """Counts up from 1 per server."""
        ...

    @property
    def remote_addr(self) -> tuple[str, int]:
        """The client (PROXY/XCLIENT aware)."""
        ...

    @property
    def local_addr(self) -> tuple[str, int]:
        """The address the client connected to."""
        ...

    @property
    def helo(self) -> str:
        """The accepted HELO/EHLO name, or ""."""
        ...

    @property
    def esmtp(self) -> bool:
        """True after EHLO."""
        ...

    @property
    def tls(self) -> TLSInfo | None:
        """The TLS layer, or None."""
        ...

    @property
    def authenticated(self) -> str | None:
        """The AUTH identity, or None."""
        ...

    @property
    def mail_from(self) -> Address | None:
        """The sender once MAIL was accepted."""
        ...

    @property
    def rcpt_to(self) -> tuple[Address, ...]:
        """The recipients accepted so far."""
        ...


# Parameters are positional-only: a user's hook may name them as it likes.
class ConnectHook(Protocol):
    """``connect(session)``: before the greeting; a refusal replaces the 220 and closes."""

    def connect(self, session: SessionView, /) -> HookReply:
        """Return None to greet, or the reply to send instead."""
        ...


class HeloHook(Protocol):
    """``helo(session, name)``: HELO or EHLO (``session.esmtp`` is not yet set)."""

    def helo(self, session: SessionView, name: str, /) -> HookReply:
        """Return None to accept, or a refusal."""
        ...


class MailHook(Protocol):
    """``mail(session, address, params)``: MAIL FROM (``Address("")`` is ``<>``)."""

    def mail(self, session: SessionView, address: Address, params: Params, /) -> HookReply:
        """Return None to accept, or a refusal."""
        ...


class RcptHook(Protocol):
    """``rcpt(session, address, params)``: one RCPT TO; a refusal keeps the transaction."""

    def rcpt(self, session: SessionView, address: Address, params: Params, /) -> HookReply:
        """Return None to accept, or a refusal."""
        ...


class DisconnectHook(Protocol):
    """``disconnect(session)``: the connection closed; nothing can be sent any more."""

    def disconnect(self, session: SessionView, /) -> Awaitable[None] | None:
        """Release what the session held; the return value is ignored."""
        ...


class HookedHandler(Handler, ConnectHook, HeloHook, MailHook, RcptHook, Protocol):
    """A handler with ``data`` and every hook (for type checking a complete handler)."""


HookCall: TypeAlias = Callable[..., Awaitable[object]]


def _async_call(method: Callable[..., object]) -> HookCall:
    if inspect.iscoroutinefunction(method) or inspect.iscoroutinefunction(
        getattr(method, "__call__", None)  # noqa: B004 (async __call__ objects count too)
    ):
        return method  # type: ignore[return-value]  # narrowed at runtime above

    @functools.wraps(method)
    async def run_in_thread(*args: Any) -> object:
        return await asyncio.to_thread(method, *args)

    return run_in_thread


@dataclass(frozen=True, slots=True)
class HookSet:
    """The hooks of a server, per command, in the order they run (each an async callable).

    Attributes:
        connect: The ``connect`` hooks, the handler's first.
        helo: The ``helo`` hooks.
        mail: The ``mail`` hooks.
        rcpt: The ``rcpt`` hooks.
        disconnect: The ``disconnect`` hooks (not counted by ``bool()``: they hold no
            command).
        names: Per command, in the order above, the qualified name of each hook (for log
            lines).
    """

    connect: tuple[HookCall, ...] = ()
    helo: tuple[HookCall, ...] = ()
    mail: tuple[HookCall, ...] = ()
    rcpt: tuple[HookCall, ...] = ()
    names: tuple[tuple[str, ...], ...] = ((), (), (), (), ())
    disconnect: tuple[HookCall, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.connect or self.helo or self.mail or self.rcpt)


def collect_hooks(objects: Iterable[object]) -> HookSet:
    """Find the hook methods of ``objects`` (handler first, then ``Server(hooks=...)``)."""
    found: dict[str, list[HookCall]] = {name: [] for name in HOOK_NAMES}
    names: dict[str, list[str]] = {name: [] for name in HOOK_NAMES}
    for obj in objects:
        for name in HOOK_NAMES:
            method = getattr(obj, name, None)
            if method is None:
                continue
            if not callable(method):
                raise TypeError(f"{type(obj).__qualname__}.{name} is not callable")
            found[name].append(_async_call(method))
            names[name].append(f"{type(obj).__module__}.{type(obj).__qualname__}.{name}")
    return HookSet(
        connect=tuple(found["connect"]),
        helo=tuple(found["helo"]),
        mail=tuple(found["mail"]),
        rcpt=tuple(found["rcpt"]),
        disconnect=tuple(found["disconnect"]),
        names=tuple(tuple(names[n]) for n in HOOK_NAMES),
    )


def check_hook_reply(value: object, what: str) -> Response | None:
    """Return ``value`` if it is None or a final reply (2xx/4xx/5xx).

    Raises:
        HandlerReturnError: Anything else; the session answers ``451 4.3.0``.
    """
    if value is None:
        return None
    if isinstance(value, Response):
        if value.code // 100 in (2, 4, 5):
            return value
        raise HandlerReturnError(f"{what} returned a non-final reply {value.code}")
    if inspect.iscoroutine(value):
        value.close()  # a plain function that returned a coroutine: never awaited
    raise HandlerReturnError(
        f"{what} returned {type(value).__qualname__} {value!r:.60}, not a smtpx.Response or None"
    )


# ------------------------------------------------------------------ hook forms of the filters
def _domains(domains: Iterable[str]) -> frozenset[str]:
    return frozenset(d.strip().rstrip(".").lower() for d in domains)


def _is_postmaster(address: Address) -> bool:
    # RFC 5321 4.5.1: <postmaster> (no domain) must always be accepted.
    return address.address.lower() == "postmaster"


class _RecipientFilter:
    __slots__ = ("_include", "_refusal")

    def __init__(self, include: Callable[[Address], bool], refusal: Response) -> None:
        self._include = include
        self._refusal = refusal

    async def rcpt(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        if _is_postmaster(address) or self._include(address):
            return None
        return self._refusal


class _SenderFilter:
    __slots__ = ("_allowed",)

    def __init__(self, allowed: frozenset[str]) -> None:
        self._allowed = allowed

    async def mail(
        self, session: SessionView, address: Address, params: Params, /
    ) -> Response | None:
        if address.domain.rstrip(".") in self._allowed:
            return None
        return SENDER_DOMAIN_NOT_ALLOWED


def filter_recipient(include: Callable[[Address], bool]) -> RcptHook:
    """At RCPT time: refuse a recipient for which ``include`` is false with ``550 5.1.1``.

    The hook form of ``smtpx.middleware``'s Go-parity ``filter_recipient``; ``<postmaster>``
    is always accepted (RFC 5321 4.5.1). ``include`` runs on the event loop: keep it quick.
    """
    return _RecipientFilter(include, FILTERED_RECIPIENT)


def filter_recipient_domains(*domains: str) -> RcptHook:
    """At RCPT time: refuse recipients outside ``domains`` with ``550 5.7.1``.

    Domains compare case-insensitively and exactly (a subdomain is another domain), without a
    trailing dot; ``<postmaster>`` is always accepted. This also stands for the Go
    ``RecipientDomainsWhitelist``: refused one by one, no recipient outside ``domains`` is left.
    """
    allowed = _domains(domains)
    return _RecipientFilter(lambda r: r.domain.rstrip(".") in allowed, RECIPIENT_DOMAIN_NOT_ALLOWED)


def sender_domains_whitelist(*domains: str) -> MailHook:
    """At MAIL time: refuse a sender outside ``domains`` (``<>`` too) with ``550 5.7.1``."""
    return _SenderFilter(_domains(domains))
