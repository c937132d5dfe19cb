"""What a session sees of its server: a narrow, typed view (no import of ``smtpx.server``).

The layers, bottom up: ``smtpx.protocol`` (sans-IO core) -> ``smtpx._session`` (one
connection, asyncio) -> ``smtpx.server`` (options, listening, client count) ->
``smtpx._runner`` (event loop, signals, worker processes) -> ``smtpx.cli``. A session needs a
few settings and a handful of calls from its server; it gets them through ``ServerView``, which
``Server`` satisfies structurally, so ``_session`` never imports ``server`` and the import
graph has no cycle (``tests/test_circular_imports.py``).

``ServerView`` is generic in the session type so that ``Server`` can keep typing its
registry with the concrete ``Session`` class.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # types only: these modules sit below this one anyway
    from ._spool import MemoryBudget
    from .auth import Authenticator, AuthThrottle, SaslMechanism
    from .handler import HandlerFunc
    from .hooks import HookSet
    from .protocol import ProtocolConfig

__all__ = ["ServerView"]

_S_contra = TypeVar("_S_contra", contravariant=True)
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ServerView(Protocol[_S_contra]):
    """The settings a session reads and the calls it makes on its server."""

    # Settings (read-only here).
    @property
    def hostname(self) -> str: ...
    @property
    def logger(self) -> logging.Logger: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_clients(self) -> int: ...
    @property
    def max_clients_per_ip(self) -> int: ...
    @property
    def max_session_time(self) -> float: ...
    @property
    def tls(self) -> ssl.SSLContext | None: ...
    @property
    def tls_always_on(self) -> bool: ...
    @property
    def proxy_on(self) -> bool: ...
    @property
    def proxy_trusted(self) -> tuple[_Network, ...]: ...
    @property
    def xclient_on(self) -> bool: ...
    @property
    def xclient_trusted(self) -> tuple[_Network, ...]: ...
    @property
    def authenticator(self) -> Authenticator | None: ...
    @property
    def auth_throttle(self) -> AuthThrottle: ...
    @property
    def auth_mechanisms(self) -> Mapping[str, Callable[[], SaslMechanism]]: ...
    @property
    def spool_threshold(self) -> int: ...
    @property
    def spool_dir(self) -> str | None: ...

    # What the server built for its sessions.
    @property
    def _protocol_config(self) -> ProtocolConfig: ...
    @property
    def _handler_chain(self) -> HandlerFunc: ...
    @property
    def _hooks(self) -> HookSet: ...
    @property
    def _recv_view(self) -> memoryview: ...
    @property
    def _shutting_down(self) -> bool: ...
    @property
    def _memory_budget(self) -> MemoryBudget: ...

    # The calls: the client count, and the loop's clock.
    def _register(self, session: _S_contra, /) -> bool: ...
    def _unregister(self, session: _S_contra, /) -> None: ...
    def _claim_ip(self, session: _S_contra, host: str, /) -> bool: ...
    def _get_loop(self) -> asyncio.AbstractEventLoop: ...
    def _loop_time(self) -> float: ...
