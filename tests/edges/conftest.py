"""Fixtures for the production-edge tests: TLS material and real servers on loopback."""

from __future__ import annotations

import pytest

from tests.edges.edgeutil import TLSMaterial
from tests.server.conftest import make_server  # noqa: F401 (the same real-server fixture)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TLSMaterial:
    return TLSMaterial(tmp_path_factory.mktemp("tls"))
