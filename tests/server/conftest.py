"""Fixtures for server tests: a real Server on a loopback port per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.server.serverthread import ServerThread


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def factory(**options: Any) -> ServerThread:
        srv = ServerThread(**options).start()
        started.append(srv)
        return srv

    yield factory
    for srv in reversed(started):  # a front made after its backend stops first
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()
