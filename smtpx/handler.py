"""Handlers: what receives the envelope after DATA and decides the reply."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

from .envelope import Envelope
from .responses import SUCCESS_MESSAGE_ACCEPTED, Response

__all__ = [
    "NOOP_HANDLER",
    "Handler",
    "HandlerFunc",
    "HandlerReturnError",
    "Middleware",
    "SyncHandlerFunc",
    "chain",
    "new_handler",
]

HandlerFunc: TypeAlias = Callable[[Envelope], Awaitable["Response | None"]]
"""An async function from envelope to reply; None means ``250 2.0.0`` accepted."""

SyncHandlerFunc: TypeAlias = Callable[[Envelope], "Response | None"]
"""A plain function handler; smtpx runs it in a worker thread so it cannot stall the loop."""

Middleware: TypeAlias = Callable[[HandlerFunc], HandlerFunc]
"""Wraps a handler (Go ``func(next HandlerFunc) HandlerFunc``); the first listed is outermost."""


@runtime_checkable
class Handler(Protocol):
    """An object that receives envelopes (Go ``Handler`` interface)."""

    async def data(self, envelope: Envelope) -> Response | None:
        """Process one message; None means accepted, a non-2xx reply aborts it."""
        ...


class _FuncHandler:
    __slots__ = ("_func",)

    def __init__(self, func: HandlerFunc) -> None:
        self._func = func

    async def data(self, envelope: Envelope) -> Response | None:
        return await self._func(envelope)

    def __repr__(self) -> str:
        return f"new_handler({self._func!r})"


def as_handler_func(func: HandlerFunc | SyncHandlerFunc) -> HandlerFunc:
    """Make an async handler function out of an async or a plain one."""
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 (async __call__ objects count too)
    ):
        return func  # type: ignore[return-value]  # narrowed at runtime above

    sync_func: SyncHandlerFunc = func  # type: ignore[assignment]  # the remaining case

    @functools.wraps(sync_func)
    async def run_in_thread(envelope: Envelope) -> Response | None:
        return await asyncio.to_thread(sync_func, envelope)

    return run_in_thread


def new_handler(func: HandlerFunc | SyncHandlerFunc) -> Handler:
    """Make a Handler from a function (Go ``NewHandler``).

    A plain (non-async) function runs in a worker thread, so a slow one does not stall other
    connections.
    """
    return _FuncHandler(as_handler_func(func))


async def _accept_all(envelope: Envelope) -> Response | None:
    return None


NOOP_HANDLER: Handler = new_handler(_accept_all)
"""Accepts every message and discards it (Go ``NoopBackend``)."""


class HandlerReturnError(TypeError):
    """A handler or middleware returned something that is neither a Response nor None.

    The session answers ``451 4.3.0`` and logs the message, which names the culprit and the
    type it returned (a common slip: ``return "250 OK"``, the aiosmtpd convention).
    """


def _describe(obj: object) -> str:
    # new_handler(f) keeps f in _func, and a plain f is wrapped (functools.wraps) to run in a
    # thread: name f itself.
    inner: Any = getattr(obj, "_func", obj)
    func: Any = inspect.unwrap(inner) if callable(inner) else inner
    name = getattr(func, "__qualname__", None)
    if not isinstance(name, str):  # an object: name its class
        return f"{type(func).__module__}.{type(func).__qualname__} object"
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if isinstance(module, str) else name


def _never_none(func: HandlerFunc, what: str) -> HandlerFunc:
    async def accepted_if_none(envelope: Envelope) -> Response | None:
        response: object = await func(envelope)
        if response is None:
            return SUCCESS_MESSAGE_ACCEPTED
        if isinstance(response, Response):
            return response
        if inspect.iscoroutine(response):
            response.close()  # a sync function that returned a coroutine: never awaited
        raise HandlerReturnError(
            f"{what} returned {type(response).__qualname__} {response!r:.60}, "
            "not a smtpx.Response or None"
        )

    return accepted_if_none


def chain(handler: Handler, middlewares: Sequence[Middleware]) -> HandlerFunc:
    """Wrap ``handler`` in ``middlewares``; ``middlewares[0]`` ends up outermost.

    As in the Go package, a None from any layer becomes ``250 2.0.0 Message accepted``, so
    a middleware's ``await next(envelope)`` always returns a Response. Any other value that
    is not a Response raises ``HandlerReturnError`` naming the layer, which the session turns
    into ``451 4.3.0``.
    """
    func: HandlerFunc = _never_none(handler.data, f"handler {_describe(handler)}")
    for middleware in reversed(middlewares):
        func = _never_none(middleware(func), f"middleware {_describe(middleware)}")
    return func
