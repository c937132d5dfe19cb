"""Fixtures for the fault-injection tests: real servers on loopback, TLS material, DNS."""

from __future__ import annotations

from tests.authres.conftest import dns_server  # noqa: F401 (the loopback DNS server factory)
from tests.edges.conftest import tls_material  # noqa: F401 (trustme CA and certificates)
from tests.server.conftest import make_server  # noqa: F401 (the same real-server fixture)
