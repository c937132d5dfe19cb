"""What the session hooks cost per message, without sockets or other processes' noise.

Drives one ``smtpx._session.Session`` through a fake transport (no event loop is needed when
nothing waits: the handler and the hooks finish in their first step), one transaction per
step: ``MAIL``+``RCPT``+``DATA`` pipelined, then a 1 KiB message. Reports the best of
``--repeat`` timings of ``--messages`` transactions, in microseconds per message, so that
another process's load changes the result little. Run it on two trees to compare them::

    python bench/hooks_cost.py                       # this tree: no hook, then an async rcpt hook
    python bench/hooks_cost.py --smtpx-path /tmp/base --no-hooks   # an older tree (no hooks)

Variants: ``none`` (no hooks), ``async`` (``async def rcpt`` returning None), ``sync`` (a
plain ``def rcpt``: it runs in a worker thread, so it needs a loop and is timed with one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


class FakeTransport:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("192.0.2.1", 4000), "sockname": ("127.0.0.1", 25)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def get_write_buffer_size(self) -> int:
        return 0


class AsyncRcpt:
    async def rcpt(self, session: object, address: object, params: object) -> None:
        return None


def run(variant: str, messages: int, repeat: int) -> float:
    import smtpx  # noqa: PLC0415 (after --smtpx-path)

    options: dict[str, Any] = {"hostname": "bench", "timeout": 0, "max_clients_per_ip": 10**6}
    if variant == "async":
        options["hooks"] = [AsyncRcpt()]
    server = smtpx.Server(**options)
    body = b"Subject: x\r\n\r\n" + (b"x" * 78 + b"\r\n") * 12 + b".\r\n"
    envelope = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
    best = float("inf")
    for _ in range(repeat):
        session = server._new_session()
        transport = FakeTransport()
        session.connection_made(transport)  # type: ignore[arg-type]
        session.data_received(b"EHLO client.example\r\n")
        start = time.process_time()
        for _ in range(messages):
            session.data_received(envelope)
            session.data_received(body)
        best = min(best, time.process_time() - start)
        accepted = sum(chunk.count(b"250 2.0.0") for chunk in transport.out)
        assert accepted == messages, (accepted, b"".join(transport.out)[-300:])
        session.connection_lost(None)
    return best / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smtpx-path", help="put first on sys.path")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--no-hooks", action="store_true", help="only the variant without hooks")
    args = parser.parse_args()
    sys.path.insert(0, args.smtpx_path or str(Path(__file__).resolve().parents[1]))
    import smtpx  # noqa: PLC0415

    variants = ["none"] if args.no_hooks else ["none", "async"]
    print(f"smtpx from {smtpx.__file__} ({smtpx.IMPLEMENTATION})")
    for variant in variants:
        us = run(variant, args.messages, args.repeat)
        print(f"{variant:>6}: {us:7.2f} us/message ({1e6 / us:,.0f} msgs/s on one core)")


if __name__ == "__main__":
    main()
