"""Standard-library smtpd sink (asyncore based; deprecated, removed in Python 3.12).

process_message counts and returns None, which smtpd answers with "250 OK".
"""

from __future__ import annotations

import signal
import sys
import warnings
from types import FrameType
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore
    import smtpd

from _common import Counter, parse_args


class CountingServer(smtpd.SMTPServer):
    counter: Counter

    def process_message(
        self, peer: Any, mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> str | None:
        self.counter.add(len(data))
        return None


def main() -> None:
    args = parse_args(__doc__ or "")
    counter = Counter(f"stdlib smtpd (Python {sys.version.split()[0]})")
    # remoteaddr is only used by smtpd's relaying subclasses; a sink never relays.
    server = CountingServer(("127.0.0.1", args.port), ("127.0.0.1", 0), data_size_limit=64 << 20)
    server.counter = counter
    # smtpd hard-codes listen(5); on Linux a second listen() just resizes the backlog.
    assert server.socket is not None
    server.socket.listen(1024)

    def on_usr2(signum: int, frame: FrameType | None) -> None:
        counter.dump(args.stats)

    signal.signal(signal.SIGUSR2, on_usr2)
    # use_poll: select() cannot watch descriptors >= 1024 (FD_SETSIZE), and the idle test
    # opens 1000 connections.
    asyncore.loop(timeout=1.0, use_poll=True)


if __name__ == "__main__":
    main()
