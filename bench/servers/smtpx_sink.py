"""smtpx sink: smtpx.Server with a handler that counts envelope.data and answers 250.

Run with PYTHONPATH pointing at the smtpx tree; SMTPX_NO_EXTENSIONS=1 selects the pure twins
(the "smtpx-pure" server of bench/load.py). ``--loop uvloop`` runs it on uvloop.
"""

from __future__ import annotations

import asyncio
import importlib
import signal
from typing import TYPE_CHECKING

from _common import Counter, parse_args

import smtpx

if TYPE_CHECKING:
    from smtpx.envelope import Envelope


async def serve(port: int, stats: str, counter: Counter) -> None:
    async def handler(envelope: Envelope) -> None:
        counter.add(len(envelope.data))
        # None means "250 OK" to smtpx.

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, counter.dump, stats)
    server = smtpx.Server(
        hostname="bench",
        addr=f"127.0.0.1:{port}",
        handler=handler,
        # Same limits as the other sinks: 64 MiB messages, no client cap in reach.
        max_size=64 << 20,
        max_clients=10_000,
    )
    await server.serve()


def main() -> None:
    args = parse_args(__doc__ or "", with_loop=True)
    impl = str(getattr(smtpx, "IMPLEMENTATION", "unknown"))
    if args.loop == "uvloop":
        # Optional dependency, imported only for --loop uvloop (and typed loosely, so mypy
        # passes whether or not uvloop is installed).
        uvloop = importlib.import_module("uvloop")

        counter = Counter(f"smtpx {impl} uvloop {uvloop.__version__}")
        uvloop.run(serve(args.port, args.stats, counter))
    else:
        counter = Counter(f"smtpx {impl} asyncio")
        asyncio.run(serve(args.port, args.stats, counter))


if __name__ == "__main__":
    main()
