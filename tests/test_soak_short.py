"""A short, bounded run of ``bench/soak.py``: nothing lost, doubled or stored unasked.

The real soak runs for 10 minutes by hand (bench/README.md, "Soak"). This runs the same
program for 20 s with 20 clients in one process: the real CLI with ``--authres`` behind a
loopback DNS server with hostile records, every scenario of the mix, and the same checker.
Only correctness is asserted; the timing figures it prints are not (they depend on the
machine's load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import smtpx

ROOT = Path(__file__).resolve().parents[1]
SOAK = ROOT / "bench" / "soak.py"
# The smtpx these tests imported (the installed wheel under tox, the tree otherwise).
SMTPX_PATH = str(Path(smtpx.__file__).resolve().parents[1])


def test_short_soak_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(SOAK), "--seconds", "20", "--clients", "20", "--procs", "1"]
    argv += ["--timeout", "5", "--think", "0.5", "--max-sessions", "2000", "--json", str(out)]
    # soak.py puts the repository root first on sys.path (for tests/authres); the server
    # and clients get PYTHONPATH, so the smtpx under test comes first for them.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SMTPX_PATH, str(ROOT)])}
    result = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    print(result.stdout)
    assert out.exists(), result.stdout + result.stderr
    summary = json.loads(out.read_text())
    assert summary["sent"] > 0 and summary["acknowledged"] > 0
    assert summary["lost"] == 0, summary["examples"]
    assert summary["duplicated"] == 0, summary["examples"]
    assert summary["mismatched"] == 0, summary["examples"]
    assert summary["unexpected"] == 0, summary["examples"]  # refused/aborted/smuggled: not stored
    assert summary["tmp_left"] == 0
    assert summary["stored"] == summary["acknowledged"] + summary["in_doubt_stored"]
    assert summary["client_stats"].get("malformed_reply", 0) == 0
    assert summary["server_exit"] == 0
    assert summary["server_log"]["tracebacks"] == 0
    assert result.returncode == 0, result.stdout + result.stderr
