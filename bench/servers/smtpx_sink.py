"""smtpx sink: smtpx.Server with a handler that counts envelope.data and answers 250.

Run with PYTHONPATH pointing at the smtpx tree; SMTPX_NO_EXTENSIONS=1 selects the pure twins
(the "smtpx-pure" server of bench/load.py). ``--loop uvloop`` runs it on uvloop.

``--rcpt-hook`` adds a trivial async ``rcpt`` session hook (it returns None), to measure what
the hook machinery costs per RCPT (issue 12).

``--workers N`` (N > 1) runs smtpx's forking runner (``smtpx._runner.run``, what
``Server.listen_and_serve`` does): the parent binds the port and forks N workers that share it
through SO_REUSEPORT. Every process then counts on its own, so on SIGUSR2 each one (the parent
too, with zero messages) writes its counts to ``PATH.<pid>``; bench/load.py signals every
process of the sink's tree and sums the files.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from typing import TYPE_CHECKING

from _common import Counter, parse_args

import smtpx

if TYPE_CHECKING:
    from types import FrameType

    from smtpx.envelope import Envelope


class RcptHook:
    async def rcpt(self, session: object, address: object, params: object) -> None:
        return None


def make_server(
    port: int, counter: Counter, workers: int = 1, rcpt_hook: bool = False
) -> smtpx.Server:
    async def handler(envelope: Envelope) -> None:
        counter.add(len(envelope))  # the size, without reading a spooled message back
        # None means "250 OK" to smtpx.

    return smtpx.Server(
        hostname="bench",
        addr=f"127.0.0.1:{port}",
        handler=handler,
        # Same limits as the other sinks: 64 MiB messages, no client cap in reach.
        max_size=64 << 20,
        max_clients=10_000,
        workers=workers,
        hooks=[RcptHook()] if rcpt_hook else [],
    )


async def serve(port: int, stats: str, counter: Counter, rcpt_hook: bool = False) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, counter.dump, stats)
    await make_server(port, counter, rcpt_hook=rcpt_hook).serve()


def serve_workers(port: int, stats: str, counter: Counter, workers: int, loop: str) -> None:
    # The runner creates each worker's event loop after fork, so there is no loop to attach a
    # handler to here. A plain signal handler is inherited by fork; in a worker it runs on the
    # main thread between bytecodes (asyncio and uvloop both wake up for signals), and `counter`
    # is then that worker's own copy.
    def dump(_signum: int, _frame: FrameType | None) -> None:
        counter.dump(f"{stats}.{os.getpid()}")

    signal.signal(signal.SIGUSR2, dump)
    from smtpx._runner import run  # noqa: PLC0415 (only this mode needs it)

    run(make_server(port, counter, workers), "uvloop" if loop == "uvloop" else None)


def main() -> None:
    args = parse_args(__doc__ or "", with_loop=True, with_workers=True, with_hook=True)
    impl = str(getattr(smtpx, "IMPLEMENTATION", "unknown"))
    if args.loop == "uvloop":
        # Optional dependency, imported only for --loop uvloop (and typed loosely, so mypy
        # passes whether or not uvloop is installed).
        uvloop = importlib.import_module("uvloop")
        label = f"smtpx {impl} uvloop {uvloop.__version__}"
    else:
        uvloop = None
        label = f"smtpx {impl} asyncio"
    if args.rcpt_hook:
        label += ", async rcpt hook"
    if args.workers > 1:
        counter = Counter(f"{label}, {args.workers} workers")
        serve_workers(args.port, args.stats, counter, args.workers, args.loop)
    elif uvloop is not None:
        counter = Counter(label)
        uvloop.run(serve(args.port, args.stats, counter, args.rcpt_hook))
    else:
        counter = Counter(label)
        asyncio.run(serve(args.port, args.stats, counter, args.rcpt_hook))


if __name__ == "__main__":
    main()
