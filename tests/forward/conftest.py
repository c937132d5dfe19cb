"""Fixtures for the forwarding tests: a front smtpx forwarding to a backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.edges.test_haproxy_real import haproxy  # noqa: F401 (the recipe test's fixture)
from tests.forward.fakes import FakeBackend, Script
from tests.server.conftest import make_server  # noqa: F401 (one fixture for both suites)


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
