"""smtpx forwarding sink: ``smtpx.forward.Forward`` to a Postfix ``smtp-sink`` behind it.

Started like the other sinks (``--port N --stats PATH``); it starts ``smtp-sink -c`` on a
free loopback port itself and forwards every transaction there (the "smtpx-forward" server of
bench/load.py, issue 14's forwarding-overhead target). On SIGUSR2 it stops smtp-sink, reads
how many messages smtp-sink received, and reports THAT as its count: the harness then checks
that every message smtp-source sent arrived at the backend exactly once. The number the
front accepted is in the "impl" label (it must be the same).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from _common import Counter, parse_args

import smtpx
from smtpx.forward import Forward


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink(out: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["smtp-sink", "-c", "-u", "nobody", "-m", "2000", f"127.0.0.1:{port}", "1024"],
        stdout=open(out, "wb"),  # noqa: SIM115 (lives as long as the process)
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("smtp-sink did not start")


async def serve(port: int, stats: str) -> None:
    impl = str(getattr(smtpx, "IMPLEMENTATION", "unknown"))
    fd, out = tempfile.mkstemp(prefix="smtp-sink-", suffix=".out")
    os.close(fd)
    sink, sink_port = start_sink(out)
    forward = Forward(f"smtp://127.0.0.1:{sink_port}", pool_size=32)
    accepted = Counter("")

    async def handler(envelope: smtpx.Envelope) -> smtpx.Response:
        reply = await forward.data(envelope)
        if reply.is_success:
            accepted.add(len(envelope.data))
        return reply

    def dump() -> None:
        sink.send_signal(signal.SIGTERM)
        sink.wait(10)
        with open(out, errors="replace") as f:
            found = re.findall(r"mesg=(\d+)", f.read())
        os.unlink(out)
        label = f"smtpx {impl} asyncio --forward smtp-sink ({accepted.messages} accepted)"
        counter = Counter(label)
        counter.messages = int(found[-1]) if found else 0
        counter.bytes = accepted.bytes
        counter.dump(stats)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, dump)
    server = smtpx.Server(
        hostname="bench",
        addr=f"127.0.0.1:{port}",
        handler=handler,
        max_size=64 << 20,
        max_clients=10_000,
        hooks=[forward],
    )
    # SIGTERM/SIGINT end serve(), so that the finally below always stops smtp-sink.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(server.shutdown(1.0)))
    try:
        await server.serve()
    finally:
        if sink.poll() is None:
            sink.kill()


def main() -> None:
    args = parse_args(__doc__ or "")
    asyncio.run(serve(args.port, args.stats))


if __name__ == "__main__":
    main()
