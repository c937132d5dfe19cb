"""Shared plumbing for the Python sink servers driven by bench/load.py.

Every sink is started as ``<sink> --port N --stats PATH``, listens on 127.0.0.1:N, prints
nothing, counts the messages (and their bytes) it accepted, and on SIGUSR2 writes
``{"messages": n, "bytes": b, "impl": "..."}`` to PATH (atomically, via rename). The harness
sends SIGUSR2 once the client has finished, waits for the file, then stops the sink with
SIGTERM (SIGKILL after a grace period). SIGUSR2 rather than SIGTERM because a server library
may install its own SIGTERM handler for graceful shutdown; SIGUSR1 is Node's inspector signal.
"""

from __future__ import annotations

import argparse
import json
import os


class Counter:
    """Messages and bytes accepted so far, plus a label for the implementation."""

    __slots__ = ("bytes", "impl", "messages")

    def __init__(self, impl: str) -> None:
        self.messages = 0
        self.bytes = 0
        self.impl = impl

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size

    def dump(self, path: str) -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            json.dump({"messages": self.messages, "bytes": self.bytes, "impl": self.impl}, f)
        os.replace(tmp, path)


def parse_args(
    description: str, with_loop: bool = False, with_workers: bool = False, with_hook: bool = False
) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stats", required=True, help="file written on SIGUSR2")
    if with_loop:
        p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    if with_workers:
        p.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    if with_hook:
        p.add_argument("--rcpt-hook", action="store_true", help="a trivial async rcpt hook")
    return p.parse_args()
