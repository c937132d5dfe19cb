"""Every smtpx module imports first, alone, in a fresh interpreter (multidict's
``test_circular_imports`` idea): an import cycle shows up as an ImportError for the module
that happens to be imported first. A second test keeps the layering of issue 12: the session
does not import the server, and the server does not import the runner at module level.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import smtpx

ROOT = Path(smtpx.__file__).resolve().parent


def _modules() -> list[str]:
    names = ["smtpx"]
    for info in pkgutil.walk_packages([str(ROOT)], prefix="smtpx."):
        if info.name.startswith("smtpx._speedups.") or info.name == "smtpx.__main__":
            continue  # compiled twins are imported through smtpx._impl; __main__ runs the CLI
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module", _modules())
def test_module_imports_alone(module: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent)}
    result = subprocess.run(
        [sys.executable, "-W", "error::ImportWarning", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _top_level_imports(module: str, *, blocks: bool = True) -> set[str]:
    """smtpx modules imported at module level, TYPE_CHECKING blocks included (a cycle of
    types is still a cycle for a reader and for mypy); imports inside functions are left out."""
    tree = ast.parse((ROOT / f"{module}.py").read_text())
    found: set[str] = set()
    nodes = list(tree.body)
    if blocks:
        nodes += [n for top in tree.body if isinstance(top, ast.If) for n in top.body + top.orelse]
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.add(node.module or "")
            found.update(alias.name for alias in node.names if node.module is None)
    return found


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("_session", {"server", "_runner", "cli"}),
        ("_server_view", {"server", "_session", "_runner"}),
        ("hooks", {"server", "_session", "_runner"}),
        ("server", {"_runner", "cli"}),
    ],
)
def test_layers(module: str, forbidden: set[str]) -> None:
    assert not _top_level_imports(module) & forbidden


def test_the_runner_sits_above_the_server() -> None:
    # Server.listen_and_serve reaches the runner by a call-time import only.
    assert "server" in _top_level_imports("_runner", blocks=False)
