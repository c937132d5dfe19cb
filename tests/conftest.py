"""The test matrix (STYLE 2.6): ``impl`` runs a test once per twin; ``--no-extensions``.

A test that takes ``impl`` runs as ``[python]`` and ``[cython]``; the ``cython`` item carries
the ``compiled`` mark, as does any test marked ``compiled`` by hand (``test_parity.py``).
``pytest --no-extensions`` deselects every ``compiled`` item (never skips it: a skip must not
read as a pass). Without the option, a compiled twin that is not built fails its items.
Fixtures of one area live in ``tests/<area>/conftest.py``, not here.
"""

from __future__ import annotations

import pytest

from tests.impls import COMPILED, PURE, Impl


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-extensions",
        action="store_true",
        default=False,
        help="deselect the tests of the compiled twins (tests marked `compiled`)",
    )


def _impl_id(impl: Impl) -> str:
    return impl.name


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" in metafunc.fixturenames:
        sides = [PURE, pytest.param(COMPILED, marks=pytest.mark.compiled)]
        metafunc.parametrize("impl", sides, ids=_impl_id, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--no-extensions"):
        kept = [item for item in items if item.get_closest_marker("compiled") is None]
        dropped = [item for item in items if item.get_closest_marker("compiled") is not None]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = kept
