"""The `smtpx` command as a user meets it: one-line errors, --version, --help, log lines, flags.

Every test runs the real CLI in a subprocess (issue 15, defects 7, 8, 9 and 10).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import smtpx
from smtpx.cli import build_parser, loop_description

ROOT = Path(__file__).resolve().parent.parent
# Run the smtpx these tests imported (the installed wheel under tox, the tree otherwise).
SMTPX_DIR = Path(smtpx.__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(SMTPX_DIR.parent)}


def smtpx_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpx", *args],
        cwd=cwd,
        env=ENV if env is None else env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    plain = tmp_path / "plain-file"
    plain.write_text("")
    return {
        "MISSING": str(tmp_path / "missing-cert.pem"),
        "GARBAGE": str(garbage),
        "FILE": str(plain),
    }


# (flags, words the one line must contain): each names the flag and the value.
MISTAKES = [
    (["--maildir", "/proc/nope"], ["--maildir", "'/proc/nope'"]),
    (["--maildir", "FILE/sub"], ["--maildir", "FILE/sub"]),
    (["--tls-cert", "MISSING", "--tls-key", "GARBAGE"], ["--tls-cert", "MISSING"]),
    (["--tls-cert", "GARBAGE", "--tls-key", "MISSING"], ["--tls-key", "MISSING"]),
    (["--tls-cert", "GARBAGE", "--tls-key", "GARBAGE"], ["--tls-cert/--tls-key", "GARBAGE"]),
    (["--tls-cert", "GARBAGE"], ["--tls-cert", "--tls-key"]),
    (["--require-tls"], ["--require-tls", "--tls-cert", "--tls-key"]),
    (["--tls-always-on"], ["--tls-always-on", "--tls-cert", "--tls-key"]),
    (["--addr", "nonsense"], ["--addr", "'nonsense'", "HOST:PORT"]),
    (["--max-size", "ten"], ["--max-size", "'ten'"]),
    (["--max-clients", "0"], ["--max-clients", "'0'"]),
    (["--workers", "-2"], ["--workers", "'-2'"]),
    (["--timeout", "-1"], ["--timeout", "'-1'"]),
    (["--timeout", "nan"], ["--timeout", "'nan'"]),
    (["--proxy", "--proxy-trusted", "10.0.0.0/33"], ["--proxy-trusted", "'10.0.0.0/33'"]),
    (["--proxy-trusted", "10.0.0.0/8"], ["--proxy-trusted", "--proxy"]),
    (["--xclient-trusted", "10.0.0.1"], ["--xclient-trusted", "--xclient"]),
    (["--dns-server", "127.0.0.1:53"], ["--dns-server", "--authres"]),
    (["--dns-server", "localhost"], ["--dns-server", "'localhost'"]),
    (["--loop", "trio"], ["--loop", "'trio'"]),
    (["--spool-dir", "MISSING"], ["--spool-dir", "MISSING"]),
    (["--spool-dir", "FILE"], ["--spool-dir", "FILE"]),
    (["--spool-threshold", "-1"], ["--spool-threshold", "'-1'"]),
    (["--spool-threshold", "4M"], ["--spool-threshold", "'4M'"]),
    (["--max-memory", "-5"], ["--max-memory", "'-5'"]),
]


@pytest.mark.parametrize(("flags", "words"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_mistake_is_one_line_naming_flag_and_value(
    tmp_path: Path, files: dict[str, str], flags: list[str], words: list[str]
) -> None:
    def fill(text: str) -> str:
        for key, value in files.items():
            text = text.replace(key, value)
        return text

    result = smtpx_cli("serve", *[fill(f) for f in flags], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smtpx serve: error: argument "), lines[0]
    for word in words:
        assert fill(word) in lines[0], (word, lines[0])
    assert not (tmp_path / "maildir").exists(), "nothing may start before the flags are checked"


def test_port_in_use_is_one_line_naming_addr(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        result = smtpx_cli("serve", "--addr", addr, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"argument --addr: cannot listen on '{addr}'" in errors[0]


def test_version_names_the_module_path_in_the_source_tree() -> None:
    # `python -m smtpx` in the repository root imports the source tree, whatever is installed.
    # Without the SMTPX_* switches of the tox env: the tree may hold no compiled twins.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("SMTPX_")}
    out = smtpx_cli("--version", cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert f"implementation, {ROOT / 'smtpx'})" in out.stdout, out.stdout


def test_version_names_the_imported_package(tmp_path: Path) -> None:
    # One line however narrow the terminal: argparse's version action wraps long paths.
    out = smtpx_cli("--version", cwd=tmp_path, env={**ENV, "COLUMNS": "40"})
    assert out.stdout.strip() == (
        f"smtpx {smtpx.__version__} ({smtpx.IMPLEMENTATION} implementation, {SMTPX_DIR})"
        f" event loop: {loop_description()}"
    )


def test_version_says_whether_uvloop_is_used(tmp_path: Path) -> None:
    # Issue 11: --version says whether uvloop is installed and that it is not the default.
    # Outside the tree: in the tree, `python -m smtpx` would import the source, not the wheel.
    out = smtpx_cli("--version", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    try:
        version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        assert out.stdout.rstrip().endswith("event loop: asyncio (uvloop not installed)")
    else:
        assert out.stdout.rstrip().endswith(
            f"event loop: asyncio (uvloop {version} installed, not the default: --loop uvloop)"
        )


def test_help_is_plain_text_and_every_flag_is_explained(tmp_path: Path) -> None:
    for args in (["--help"], ["serve", "--help"]):
        out = smtpx_cli(*args, cwd=tmp_path)
        assert out.returncode == 0
        assert "``" not in out.stdout, out.stdout
    parser = build_parser()
    (choices,) = [a.choices for a in parser._actions if isinstance(a.choices, dict)]
    serve = choices["serve"]
    assert isinstance(serve, argparse.ArgumentParser)
    unexplained = [a.option_strings for a in serve._actions if not a.help]
    assert unexplained == []


@contextlib.contextmanager
def running(tmp_path: Path, *flags: str) -> Iterator[tuple[int, list[str]]]:
    """`smtpx serve` on a free port; yields the port and, after the block, its stderr lines."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtpx", "serve", "--addr", f"127.0.0.1:{port}", *flags],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not start"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.05)
        yield port, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        lines += err.splitlines()


def test_log_lines_name_maildir_and_implementation_once(tmp_path: Path) -> None:
    with running(tmp_path, "--maildir", "box") as (_, lines):
        pass
    text = "\n".join(lines)
    assert "smtpx: smtpx" not in text
    assert "smtpx.cli: smtpx" not in text
    (start,) = [line for line in lines if "Maildir" in line]
    assert str(tmp_path / "box") in start
    assert f"{smtpx.IMPLEMENTATION} implementation" in start
    assert any("smtpx: listening on 127.0.0.1:" in line for line in lines), text


def ehlo_has_xclient(port: int) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        return client.has_extn("xclient")


def test_xclient_trusted_flag(tmp_path: Path) -> None:
    with running(tmp_path, "--xclient") as (port, _):
        assert ehlo_has_xclient(port)  # default: loopback is trusted
    flags = ["--xclient", "--xclient-trusted", "192.0.2.0/24", "--xclient-trusted", "10.1.0.0/16"]
    with running(tmp_path, *flags) as (port, _):
        assert not ehlo_has_xclient(port)
    flags = ["--xclient", "--xclient-trusted", "192.0.2.0/24,127.0.0.0/8"]
    with running(tmp_path, *flags) as (port, _):
        assert ehlo_has_xclient(port)


def greeting_after_proxy(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.8 4711 25\r\n")
        try:
            return sock.recv(100)
        except ConnectionResetError:  # closed with our header unread
            return b""


def test_proxy_trusted_flag(tmp_path: Path) -> None:
    with running(tmp_path, "--proxy", "--proxy-trusted", "192.0.2.0/24") as (port, _):
        assert greeting_after_proxy(port) == b""  # closed without a greeting
    with running(tmp_path, "--proxy", "--proxy-trusted", "192.0.2.0/24,127.0.0.1") as (port, _):
        assert greeting_after_proxy(port).startswith(b"220 ")
