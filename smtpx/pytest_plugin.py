"""pytest plugin: the ``smtpx_server`` and ``smtpx_server_factory`` fixtures.

Installed with smtpx, it is loaded through the ``pytest11`` entry point named ``smtpx``
(disable it with ``-p no:smtpx``); without the entry point, load it with
``pytest_plugins = ["smtpx.pytest_plugin"]`` in a top-level ``conftest.py``.

``smtpx_server`` is a started :class:`smtpx.testing.Controller`, stopped after the test. Give
it ``Controller``/``Server`` options with the ``smtpx_server`` mark::

    import pytest
    from smtpx.testing import Controller

    @pytest.mark.smtpx_server(max_size=1000)
    def test_size_limit(smtpx_server: Controller) -> None:
        with smtpx_server.smtp() as client:
            ...

``smtpx_server_factory(**options)`` starts further controllers, all stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing import Controller

__all__ = ["smtpx_server", "smtpx_server_factory"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``smtpx_server`` mark (so ``--strict-markers`` accepts it)."""
    config.addinivalue_line(
        "markers",
        "smtpx_server(**options): smtpx.testing.Controller options for the smtpx_server fixture",
    )


@pytest.fixture
def smtpx_server_factory() -> Iterator[Callable[..., Controller]]:
    """Start ``Controller(**options)`` on each call; every one is stopped after the test."""
    started: list[Controller] = []

    def factory(**options: Any) -> Controller:
        controller = Controller(**options).start()
        started.append(controller)
        return controller

    yield factory
    for controller in reversed(started):
        controller.stop()


@pytest.fixture
def smtpx_server(
    request: pytest.FixtureRequest, smtpx_server_factory: Callable[..., Controller]
) -> Controller:
    """A started ``smtpx.testing.Controller``; options come from the ``smtpx_server`` mark."""
    marker = request.node.get_closest_marker("smtpx_server")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    return smtpx_server_factory(**options)
