"""Fixtures for the authres tests.

``dns_server`` is a factory (type ``tests.authres.dnsserver.DNSServerFactory``): call it with a
zone (and optionally ``timeout_names``, ``servfail_names``, ``timeout_rrsets``) to get a started
``LoopbackDNSServer`` on a free 127.0.0.1 port, answering real UDP and TCP queries. Every server
it started is stopped when the test ends. Call ``.resolver(timeout)`` on the server for a
``dns.asyncresolver.Resolver`` that asks only it, or ``.set_zone()`` to change records::

    async def test_x(dns_server: DNSServerFactory) -> None:
        server = dns_server({"example.com": [("TXT", '"v=spf1 -all"')]})
        resolver = server.resolver(timeout=0.3)
        ...

Async tests in this directory run under ``asyncio.run`` through the small hook below (no plugin
needed): an ``async def test_*`` gets a fresh event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Collection, Iterator

import pytest

from tests.authres.dnsserver import DNSServerFactory, LoopbackDNSServer, Zone


@pytest.fixture
def dns_server() -> Iterator[DNSServerFactory]:
    started: list[LoopbackDNSServer] = []

    def start(
        zone: Zone = {},  # noqa: B006 (read-only Mapping, never mutated)
        *,
        timeout_names: Collection[str] = (),
        servfail_names: Collection[str] = (),
        timeout_rrsets: Collection[tuple[str, str]] = (),
    ) -> LoopbackDNSServer:
        server = LoopbackDNSServer(
            zone,
            timeout_names=timeout_names,
            servfail_names=servfail_names,
            timeout_rrsets=timeout_rrsets,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in this directory on a fresh asyncio event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    params = inspect.signature(pyfuncitem.obj).parameters
    kwargs = {name: pyfuncitem.funcargs[name] for name in params}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
