"""msgs/s of ``smtpx serve --authres`` on DKIM-signed 1 KiB messages, with and without DNS cache.

Issue 11, scope item 3. A loopback DNS server (``tests/authres/dnsserver.py``, in a thread of
this process) serves the sender's SPF record, its DKIM key and its DMARC record (TTL 300 s).
``smtpx serve --authres --dns-server`` runs in a child process, once with the default resolver
cache (``--dns-cache``, see ``smtpx.authres._dns.DNS_CACHE_SIZE``) and once with
``--dns-cache 0``. ``--clients`` asyncio clients, one connection each, send the same signed
message in lockstep (MAIL, RCPT, DATA, body: no pipelining, as smtp-source) until
``--messages`` are accepted; msgs/s is messages over the wall time from the first MAIL to the
last 250. The Maildir sits on ``/dev/shm`` when there is one, so that the per-message fsync does
not hide what DNS costs. Also counts the DNS queries per message the server made.

Bounded: ``--messages`` per run (default 600), a 60 s timeout per run, loopback only::

    nice python bench/authres_load.py
    nice python bench/authres_load.py --messages 1000 --clients 20 --reps 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtpx.authres import dkim  # noqa: E402
from tests.authres.dnsserver import LoopbackDNSServer  # noqa: E402

SENDER = "alice@example.com"


def signed_message() -> tuple[bytes, dict[str, list[tuple[str, str]]]]:
    """A 1 KiB message signed for example.com, and the zone that makes it pass SPF/DKIM/DMARC."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    head = f"From: {SENDER}\r\nTo: bob@mx.test\r\nSubject: authres load\r\n\r\n".encode()
    body = (b"x" * 78 + b"\r\n") * ((1024 - len(head)) // 80)
    plain = head + body
    message = dkim.sign(plain, domain="example.com", selector="bench", private_key=pem) + plain
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
    chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    zone = {
        "example.com": [("TXT", '"v=spf1 ip4:127.0.0.1 -all"')],
        "bench._domainkey.example.com": [("TXT", chunks)],
        "_dmarc.example.com": [("TXT", '"v=DMARC1; p=reject"')],
    }
    return message, zone


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code!r}, got {line!r}")
        if line[3:4] == b" ":
            return


async def client(port: int, message: bytes, left: list[int]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await expect(reader, b"220")
    writer.write(b"EHLO client.test\r\n")
    await expect(reader, b"250")
    sent = 0
    data = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    while left[0] > 0:
        left[0] -= 1
        for command, code in (
            (f"MAIL FROM:<{SENDER}>\r\n".encode(), b"250"),
            (b"RCPT TO:<bob@mx.test>\r\n", b"250"),
            (b"DATA\r\n", b"354"),
            (data, b"250"),
        ):
            writer.write(command)
            await expect(reader, code)
        sent += 1
    writer.write(b"QUIT\r\n")
    writer.close()
    return sent


async def drive(port: int, message: bytes, messages: int, clients: int) -> tuple[int, float]:
    left = [messages]
    start = time.perf_counter()
    sent = await asyncio.wait_for(
        asyncio.gather(*(client(port, message, left) for _ in range(clients))), 60
    )
    return sum(sent), time.perf_counter() - start


def one_run(
    dns: LoopbackDNSServer, message: bytes, args: argparse.Namespace, cache: int | None
) -> tuple[float, float]:
    port = free_port()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        flags = ["--authres", "--dns-server", f"{dns.host}:{dns.port}", "--log-level", "WARNING"]
        if cache is not None:
            flags += ["--dns-cache", str(cache)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SMTPX_REQUIRE_EXTENSIONS": "1"}
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "smtpx", "serve", "--addr", f"127.0.0.1:{port}"),
                *("--maildir", f"{tmp}/maildir", "--hostname", "mx.test", *flags),
            ],
            env=env,
            cwd=tmp,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("smtpx serve did not start") from None
                    time.sleep(0.05)
            # Warm-up (imports, the first lookups), then the measured batch.
            asyncio.run(drive(port, message, args.clients, args.clients))
            before = len(dns.queries)
            sent, seconds = asyncio.run(drive(port, message, args.messages, args.clients))
            queries = (len(dns.queries) - before) / sent
            stored = len(os.listdir(f"{tmp}/maildir/new"))
            assert stored == sent + args.clients, (stored, sent)
        finally:
            server.terminate()
            server.wait(timeout=20)
    return sent / seconds, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600, help="measured messages per run")
    parser.add_argument("--clients", type=int, default=10, help="concurrent connections")
    parser.add_argument("--reps", type=int, default=3, help="runs per setting (median)")
    args = parser.parse_args()
    message, zone = signed_message()
    rows = []
    with LoopbackDNSServer(zone) as dns:
        for label, cache in (("default cache", None), ("--dns-cache 0 (no cache)", 0)):
            results = [one_run(dns, message, args, cache) for _ in range(args.reps)]
            rates = [r for r, _q in results]
            queries = statistics.median(q for _r, q in results)
            rows.append((label, statistics.median(rates), min(rates), max(rates), queries))
    print(
        f"smtpx serve --authres, DKIM-signed {len(message)}-byte messages, "
        f"{args.clients} clients, {args.messages} messages, median of {args.reps}\n"
    )
    print("| resolver | msgs/s (median) | min-max | DNS queries per message |")
    print("|---|---|---|---|")
    for label, median, low, high, queries in rows:
        print(f"| {label} | {median:,.0f} | {low:,.0f}-{high:,.0f} | {queries:.2f} |")


if __name__ == "__main__":
    main()
