"""Twin selection at import (STYLE 2.1): ``smtpx._impl`` and its environment variables.

The subprocess tests start fresh interpreters so each sees its own environment; they import
the same ``smtpx`` this test process imports (the installed wheel under tox, the source tree
otherwise), from a scratch working directory.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import smtpx
import smtpx._impl
from smtpx import _reader_py

PROBE = (
    "import smtpx._impl as i; "
    "print(i.IMPLEMENTATION, i.DataReader.__module__, i.parse_header_block.__module__)"
)


def run_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMTPX_")}
    # Import the smtpx under test: put the directory that holds its package first on the path.
    clean["PYTHONPATH"] = str(Path(smtpx.__file__).resolve().parent.parent)
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def compiled_present() -> bool:
    """Are all compiled twins built? (All load or none do.)"""
    names = ("smtpx._speedups._reader", "smtpx._speedups._headers")
    return all(importlib.util.find_spec(name) is not None for name in names)


def test_implementation_is_what_ci_expects() -> None:
    expected = os.environ.get("SMTPX_EXPECT_IMPLEMENTATION")
    assert smtpx._impl.IMPLEMENTATION in ("cython", "python")
    if expected:
        assert expected == smtpx._impl.IMPLEMENTATION
        # tox sets the variable, and tox tests the installed wheel, not the source tree.
        tree = Path(__file__).resolve().parent.parent
        assert Path(smtpx.__file__).resolve().parent.parent != tree


def test_loaded_twins_match_the_implementation() -> None:
    reader_module = smtpx._impl.DataReader.__module__
    headers_module = smtpx._impl.parse_header_block.__module__
    if smtpx._impl.IMPLEMENTATION == "cython":
        assert (reader_module, headers_module) == (
            "smtpx._speedups._reader",
            "smtpx._speedups._headers",
        )
    else:
        assert (reader_module, headers_module) == ("smtpx._reader_py", "smtpx._headers_py")
        assert smtpx._impl.DataReader is _reader_py.DataReader


@pytest.mark.parametrize("value", ["1", "0", "yes"])
def test_no_extensions_forces_pure(tmp_path: Path, value: str) -> None:
    # Any non-empty value counts, "0" included (as in aio-libs).
    proc = run_probe(tmp_path, SMTPX_NO_EXTENSIONS=value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["python", "smtpx._reader_py", "smtpx._headers_py"]


def test_empty_no_extensions_is_unset(tmp_path: Path) -> None:
    proc = run_probe(tmp_path, SMTPX_NO_EXTENSIONS="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == ("cython" if compiled_present() else "python")


def test_require_extensions(tmp_path: Path) -> None:
    proc = run_probe(tmp_path, SMTPX_REQUIRE_EXTENSIONS="1")
    if compiled_present():
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [
            "cython",
            "smtpx._speedups._reader",
            "smtpx._speedups._headers",
        ]
    else:
        # A missing extension is an error, not a silent fallback.
        assert proc.returncode != 0
        assert "ModuleNotFoundError" in proc.stderr or "ImportError" in proc.stderr


def test_failed_compiled_import_is_an_error_when_required(tmp_path: Path) -> None:
    # A broken extension (here: an import that fails) must not fall back when required, and
    # must report "python" when not. A shadow `smtpx._speedups` package on a copied tree
    # cannot be arranged without touching the install, so poison the import system instead.
    poison = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('smtpx._speedups.'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    (tmp_path / "sitecustomize.py").write_text(poison)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMTPX_")}
    path = f"{tmp_path}{os.pathsep}{Path(smtpx.__file__).resolve().parent.parent}"
    for env, code, impl in (({}, 0, "python"), ({"SMTPX_REQUIRE_EXTENSIONS": "1"}, 1, None)):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE],
            env={**base, "PYTHONPATH": path, **env},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == code, proc.stderr
        if impl is not None:
            assert proc.stdout.split()[0] == impl
        else:
            assert "blocked smtpx._speedups" in proc.stderr
