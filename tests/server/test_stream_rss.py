"""Issue 14 targets: big messages through `smtpx serve` cost disk, not memory (RSS from /proc).

The server is the real CLI in a subprocess; the clients are raw sockets that generate the
message as they send it (the test never holds it whole) and hash it on the way. Memory is read
from ``/proc/<pid>/status``: ``VmHWM`` is the peak resident set, reset through
``/proc/<pid>/clear_refs`` between phases. Timings (the NOOP latency) are printed, never
asserted: the machine may be shared.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.test_cli import serve

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads RSS from /proc (Linux)"
)

MIB = 1024 * 1024


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid: int) -> None:
    """Start VmHWM over from the current RSS (Linux 4.0+, the process's owner or root)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def server_pid(port: int) -> int:
    """The pid listening on 127.0.0.1:``port`` (the `smtpx serve` child)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
            inode = fields[9]
    assert inode is not None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
            except OSError:
                continue
    raise AssertionError("no process listens on the port")


def blocks(size: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    """About ``size`` bytes of message, about 1 MiB at a time: (wire bytes, message bytes).

    Every seventh line starts with a dot, which the client doubles on the wire (RFC 5321
    4.5.2) and the server must drop again.
    """
    header = b"Subject: big %d\r\nFrom: a@example.org\r\n\r\n" % seed
    yield header, header
    text = [
        (b".dot" if i % 7 == 0 else b"text") + b" line of a long message, seed %d\r\n" % seed
        for i in range(20000)
    ]
    message = b"".join(text)
    wire = b"".join(b"." + line if line.startswith(b".") else line for line in text)
    sent = len(header)
    while sent < size:
        yield wire, message
        sent += len(message)


def upload(port: int, size: int, seed: int) -> tuple[bytes, str, int]:
    """Send one message of about ``size`` bytes; return (reply, sha256 of the message, length)."""
    digest = hashlib.sha256()
    length = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        for command in (b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<b@example.org>\r\n"):
            sock.sendall(command)
            assert f.readline().startswith(b"250")
        sock.sendall(b"DATA\r\n")
        assert f.readline().startswith(b"354")
        for wire, message in blocks(size, seed):
            sock.sendall(wire)
            digest.update(message)
            length += len(message)
        sock.sendall(b".\r\n")
        reply = f.readline()
        sock.sendall(b"QUIT\r\n")
    return reply, digest.hexdigest(), length


def stored_digests(maildir: Path) -> dict[str, str]:
    """sha256 of each stored message without the headers the server prepended, by length."""
    out = {}
    for path in (maildir / "new").iterdir():
        digest = hashlib.sha256()
        with path.open("rb") as f:
            head = f.read(64 * 1024)
            start = head.index(b"Subject: big ")
            assert head[:start].startswith((b"Received:", b"Return-Path:")), head[:start]
            digest.update(head[start:])
            while block := f.read(MIB):
                digest.update(block)
        out[digest.hexdigest()] = str(path)
    return out


PROBER = """
import os, socket, sys, time
port, stop_file = int(sys.argv[1]), sys.argv[2]
worst, count = 0.0, 0
while not os.path.exists(stop_file):
    # A new connection every 40 NOOPs: NOOP counts as a junk command (at most 100 without a
    # message in between).
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        f = sock.makefile("rb")
        f.readline()
        for _ in range(40):
            if os.path.exists(stop_file):
                break
            started = time.monotonic()
            sock.sendall(b"NOOP\\r\\n")
            assert f.readline().startswith(b"250")
            worst = max(worst, time.monotonic() - started)
            count += 1
            time.sleep(0.02)
        sock.sendall(b"QUIT\\r\\n")
        f.readline()
print(worst, count)
"""


def test_a_200_mib_message_costs_at_most_64_mib_of_rss(tmp_path: Path) -> None:
    maildir, spool = tmp_path / "Maildir", tmp_path / "spool"
    spool.mkdir()
    with serve(maildir, "--max-size", "300000000", "--spool-dir", str(spool)) as (port, _):
        pid = server_pid(port)
        upload(port, 64 * 1024, 0)  # warm up: imports, the first message's code paths
        before = status(pid)
        reset_peak(pid)
        started = time.monotonic()
        reply, sent, length = upload(port, 200 * MIB, 1)
        elapsed = time.monotonic() - started
        after = status(pid)
        assert reply.startswith(b"250"), reply
        assert os.listdir(spool) == []
    growth = after["VmHWM"] - before["VmRSS"]
    print(
        f"\n200 MiB: {length} bytes in {elapsed:.1f}s; RSS before {before['VmRSS'] / MIB:.1f}"
        f" MiB, peak during {after['VmHWM'] / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB"
    )
    assert length >= 200 * MIB
    assert growth <= 64 * MIB
    assert sent in stored_digests(maildir)  # byte-identical
    shutil.rmtree(maildir)  # 200 MiB that pytest would keep for three runs


def test_20_concurrent_20_mib_uploads_peak_at_2x_one_and_noop_answers(tmp_path: Path) -> None:
    maildir, spool = tmp_path / "Maildir", tmp_path / "spool"
    spool.mkdir()
    flags = ("--max-size", "300000000", "--spool-dir", str(spool), "--max-clients", "50")
    with serve(maildir, *flags) as (port, _):
        pid = server_pid(port)
        upload(port, 64 * 1024, 0)
        reset_peak(pid)
        reply, one_digest, _ = upload(port, 20 * MIB, 1)
        assert reply.startswith(b"250"), reply
        one = status(pid)["VmHWM"]
        reset_peak(pid)

        results: list[tuple[bytes, str, int]] = []
        errors: list[BaseException] = []

        def client(seed: int) -> None:
            try:
                results.append(upload(port, 20 * MIB, seed))
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        # The prober is its own process: as a thread here it would wait for this process's
        # GIL behind the 20 uploading threads, and time them instead of the server.
        stop_file = tmp_path / "stop-probing"
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBER, str(port), str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(2, 22)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        stop_file.touch()
        out, _ = probe.communicate(timeout=120)
        assert probe.returncode == 0, out
        noop_worst, noops = float(out.split()[0]), int(out.split()[1])
        twenty = status(pid)["VmHWM"]
        assert os.listdir(spool) == []
    assert not errors, errors
    print(
        f"\n20 x 20 MiB in {elapsed:.1f}s: peak RSS {twenty / MIB:.1f} MiB"
        f" (one upload: {one / MIB:.1f} MiB); worst NOOP {noop_worst * 1000:.1f} ms"
        f" over {noops} NOOPs"
    )
    assert all(reply.startswith(b"250") for reply, _, _ in results), results
    stored = stored_digests(maildir)
    assert one_digest in stored
    assert all(digest in stored for _, digest, _ in results)
    shutil.rmtree(maildir)  # 420 MiB
    assert twenty <= 2 * one
    assert noops > 0
