"""Packaging (issue 4 part 3): one ``python -m build``, then the wheel and the sdist each installed.

The sdist must carry the ``.pyx``/``.pyi`` sources and no generated ``.c``; the wheel and the
sdist are each installed into a fresh virtual environment (under ``tmp_path``) where a message
goes through ``DataReader``. Under ``SMTPX_NO_EXTENSIONS`` the build is pure (a
``py3-none-any`` wheel and a banner on stderr); otherwise the wheel is compiled and the smoke
test sees ``cython``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = """
import smtpx, smtpx._impl
print(smtpx._impl.IMPLEMENTATION)
reader = smtpx._impl.DataReader(1000)
assert reader.feed(b"Subject: hi\\r\\n\\r\\n..body\\r\\n.\\r\\nQUIT\\r\\n") == 26
assert reader.result() == b"Subject: hi\\r\\n\\r\\n.body\\r\\n", reader.result()
print("ok")
"""


@pytest.mark.timeout(900)
def test_sdist_and_wheel(tmp_path: Path) -> None:
    pure = bool(os.environ.get("SMTPX_NO_EXTENSIONS"))
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "SMTPX_EXPECT_IMPLEMENTATION"}
    if not pure:
        env["SMTPX_REQUIRE_EXTENSIONS"] = "1"  # a compiled build that falls back is a failure
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    if pure:
        assert "pure-Python build" in build.stderr

    (sdist,) = dist.glob("smtpx-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    speedups = [n for n in names if "/smtpx/_speedups/" in n]
    assert any(n.endswith("_reader.pyx") for n in speedups), names
    assert any(n.endswith("_reader.pyi") for n in speedups), names
    assert not [n for n in names if n.endswith(".c")], names
    assert any(n.endswith("/setup.py") for n in names)

    (wheel,) = dist.glob("smtpx-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        files = whl.namelist()
    assert "smtpx/_speedups/_reader.pyx" in files
    assert "smtpx/_speedups/_reader.pyi" in files
    assert "smtpx/py.typed" in files
    assert not [n for n in files if n.endswith(".c")], files
    compiled = [
        n for n in files if n.startswith("smtpx/_speedups/_reader.") and n.endswith((".so", ".pyd"))
    ]
    if pure:
        assert wheel.name.endswith("-py3-none-any.whl")
        assert compiled == []
    else:
        assert not wheel.name.endswith("-none-any.whl")
        assert len(compiled) == 1

    expected = "python" if pure else "cython"
    assert install_and_smoke(wheel, tmp_path / "wheel-venv", {}) == [expected, "ok"]
    # The sdist builds on the user's machine: compiled, unless the user asks for pure.
    sdist_env = {"SMTPX_NO_EXTENSIONS": "1"} if pure else {"SMTPX_REQUIRE_EXTENSIONS": "1"}
    assert install_and_smoke(sdist, tmp_path / "sdist-venv", sdist_env) == [expected, "ok"]


def install_and_smoke(artifact: Path, env_dir: Path, extra_env: dict[str, str]) -> list[str]:
    """Install ``artifact`` into a fresh venv and return what the smoke test printed."""
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("SMTPX_", "PYTHON", "VIRTUAL_ENV"))
    }
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(artifact),
        ],
        env={**clean, **extra_env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    smoke = subprocess.run(
        [str(python), "-I", "-c", SMOKE],
        env=clean,
        cwd=env_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stderr
    return smoke.stdout.split()
