"""mypy --strict accepts a handler with every hook and refuses a wrong hook signature."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = (ROOT / "tests" / "typing_hooks.py").read_text()


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir",
         str(tmp_path / "cache"), "--config-file", str(ROOT / "pyproject.toml"), str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )  # fmt: skip


def test_a_handler_with_every_hook_passes_mypy_strict(tmp_path: Path) -> None:
    result = mypy(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        # rcpt without its params argument
        (
            "async def rcpt(self, session: SessionView, address: Address, params: Params)",
            "async def rcpt(self, session: SessionView, address: Address)",
            'expression has type "Complete"',
        ),
        # the aiosmtpd habit: a reply as a string
        (
            "def helo(self, session: SessionView, name: str) -> Response | None:\n"
            "        return None",
            'def helo(self, session: SessionView, name: str) -> str:\n        return "250 OK"',
            'expression has type "Complete"',
        ),
        # an address as str instead of Address
        (
            "async def mail(self, session: SessionView, address: Address, params: Params)",
            "async def mail(self, session: SessionView, address: int, params: Params)",
            'expression has type "Complete"',
        ),
    ],
)
def test_a_wrong_hook_signature_fails_mypy(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    assert old in GOOD
    result = mypy(tmp_path, GOOD.replace(old, new))
    assert result.returncode == 1, result.stdout
    assert complaint in result.stdout
