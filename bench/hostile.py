"""What one hostile DKIM message costs a real ``smtpx serve --authres`` (issue 9, items 1 and 3).

Run by hand from the repository root (never in tests)::

    PYTHONPATH=. python bench/hostile.py key [--bits 16384] [--sigs 1]
    PYTHONPATH=. python bench/hostile.py headers [--count 7] [--lines 150000]

It starts the loopback DNS server of ``tests/authres/dnsserver.py`` in this process and the real
CLI (``python -m smtpx serve --authres --maildir ...``) in a child process, then over loopback:

* ``key``: one message whose DKIM-Signature points at a key record with a ``--bits``-bit
  modulus and exponent (served over TCP), ``--sigs`` signatures on it;
* ``headers``: ``--count`` concurrent messages with one field folded over ``--lines``
  continuation lines, then one honest message on a fresh connection.

Meanwhile another connection sends NOOP every 20 ms. Printed: each hostile message's reply
time, the honest message's reply time (``headers``), the longest NOOP round trip (the stall
every other client sees), and the server's peak RSS (``VmHWM``). Every client socket has a
timeout (``--limit``), so a run is bounded even against a frozen server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smtpx.authres import dkim
from tests.authres.dnsserver import LoopbackDNSServer
from tests.authres.hostile import folded_header_message, huge_rsa_record

HONEST = (
    b"From: Alice <alice@example.com>\r\nTo: bob@mx.test\r\nSubject: dinner\r\n\r\n"
    b"Hi Bob, the game starts at eight.\r\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(dns_port: int, maildir: str) -> Iterator[tuple[int, int]]:
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "smtpx",
        "serve",
        f"--addr=127.0.0.1:{port}",
        "--hostname=mx.test",
        "--authres",
        f"--dns-server=127.0.0.1:{dns_port}",
        f"--maildir={maildir}",
        "--max-size=67108864",
        "--log-level=ERROR",
    ]
    proc = subprocess.Popen(argv)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Session:
    """A minimal SMTP client on a raw socket: one command, one reply, timed."""

    def __init__(self, port: int, limit: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=limit)
        self.file = self.sock.makefile("rb")
        self.reply()
        self.command(b"EHLO bench.test")

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("server closed the connection")
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def send_mail(self, data: bytes) -> tuple[float, bytes]:
        self.command(b"MAIL FROM:<alice@example.com>")
        self.command(b"RCPT TO:<bob@mx.test>")
        self.command(b"DATA")
        self.sock.sendall(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        start = time.perf_counter()
        reply = self.reply()
        return time.perf_counter() - start, reply.strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _noops(port: int, limit: float, stop: threading.Event, out: list[float]) -> None:
    session = _Session(port, limit)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            session.command(b"NOOP")
            out.append(time.perf_counter() - start)
            stop.wait(0.02)
    finally:
        session.close()


def _signed(message: bytes, selectors: list[str], pem: bytes) -> bytes:
    sigs = b"".join(
        dkim.sign(message, domain="example.com", selector=s, private_key=pem) for s in selectors
    )
    return sigs + message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("case", choices=("key", "headers"))
    parser.add_argument("--bits", type=int, default=16384)
    parser.add_argument("--sigs", type=int, default=1)
    parser.add_argument("--count", type=int, default=7)
    parser.add_argument("--lines", type=int, default=150_000)
    parser.add_argument("--limit", type=float, default=120.0, help="client socket timeout (s)")
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    zone = {
        "example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
        "_dmarc.example.com": [("TXT", '"v=DMARC1; p=none"')],
    }
    record = huge_rsa_record(args.bits)
    zone["big._domainkey.example.com"] = [
        ("TXT", " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200)))
    ]
    print(f"key record: {len(record)} bytes ({args.bits}-bit n and e)")

    with (
        LoopbackDNSServer(zone) as dns,
        tempfile.TemporaryDirectory() as maildir,
        _server(dns.port, maildir) as (port, pid),
    ):
        print(f"server RSS before: {_peak_rss_mib(pid):.1f} MiB (VmHWM)")
        stop = threading.Event()
        latencies: list[float] = []
        prober = threading.Thread(target=_noops, args=(port, args.limit, stop, latencies))
        prober.start()
        time.sleep(0.3)
        results: list[tuple[str, float, bytes]] = []

        def deliver(label: str, data: bytes) -> None:
            session = _Session(port, args.limit)
            try:
                elapsed, reply = session.send_mail(data)
                results.append((label, elapsed, reply))
            except OSError as exc:
                results.append((label, float("nan"), repr(exc).encode()))
            finally:
                session.close()

        start = time.perf_counter()
        threads: list[threading.Thread] = []
        if args.case == "key":
            message = _signed(HONEST, ["big"] * args.sigs, pem)
            threads.append(threading.Thread(target=deliver, args=("hostile", message)))
        else:
            # Any DKIM-Signature will do: the cost is in reading the header block.
            signature = dkim.sign(HONEST, domain="example.com", selector="rsa", private_key=pem)
            message = folded_header_message(args.lines, signature)
            print(f"hostile message: {len(message)} bytes, {args.lines} continuation lines")
            for i in range(args.count):
                threads.append(threading.Thread(target=deliver, args=(f"hostile{i}", message)))
        for t in threads:
            t.start()
        if args.case == "headers":
            time.sleep(1.0)  # the hostile messages are in authres by now
            deliver("honest", HONEST)
        for t in threads:
            t.join(args.limit + 5)
        total = time.perf_counter() - start
        stop.set()
        prober.join(args.limit + 5)
        for label, elapsed, reply in results:
            print(f"{label}: reply after {elapsed:.3f} s: {reply[:120]!r}")
        print(f"wall time: {total:.2f} s")
        if latencies:
            worst = max(latencies) * 1e3
            print(f"NOOPs answered: {len(latencies)}, longest round trip {worst:.1f} ms")
        print(f"server peak RSS: {_peak_rss_mib(pid):.1f} MiB (VmHWM)")
        with contextlib.suppress(OSError):
            stored = os.listdir(os.path.join(maildir, "new"))
            print(f"stored messages: {len(stored)}")
            verdicts = set()
            for name in stored:
                with open(os.path.join(maildir, "new", name), "rb") as f:
                    head = f.read(4096)
                verdicts.update(re.findall(rb"dkim=[a-z]+(?: reason=\"[^\"]*\")?", head))
            print("dkim verdicts stored:", sorted(verdicts))


if __name__ == "__main__":
    main()
