"""Fixtures for the production-edge tests: TLS material and real servers on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.edges.edgeutil import TLSMaterial
from tests.server.serverthread import ServerThread


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def factory(**options: Any) -> ServerThread:
        srv = ServerThread(**options).start()
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop(2)
