"""Fixtures for the forwarding tests: a front smtpx forwarding to a backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.edges.test_haproxy_real import haproxy  # noqa: F401 (the recipe test's fixture)
from tests.forward.fakes import FakeBackend, Script
from tests.server.serverthread import ServerThread


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def factory(**options: Any) -> ServerThread:
        srv = ServerThread(**options).start()
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):
        srv.stop()


@pytest.fixture
def fake() -> Iterator[Callable[[Script], FakeBackend]]:
    started: list[FakeBackend] = []

    def factory(script: Script) -> FakeBackend:
        backend = FakeBackend(script).start()
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        backend.stop()
