"""The suite's own pytest settings catch what would otherwise pass unnoticed (issue 9 item 25)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DEAD_THREAD = """
import threading


def test_a_worker_thread_dies() -> None:
    def work() -> None:
        raise RuntimeError("worker died")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
"""


def test_a_dead_worker_thread_fails_its_test(tmp_path: Path) -> None:
    # A load test whose client thread raises must not pass on the other threads' results.
    test_file = tmp_path / "test_dead_thread.py"
    test_file.write_text(DEAD_THREAD)
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *config, str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "worker died" in result.stdout and "1 failed" in result.stdout, result.stdout
