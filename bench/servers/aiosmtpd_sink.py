"""aiosmtpd sink: aiosmtpd.smtp.SMTP on a plain asyncio server, no Controller thread.

The handler's handle_DATA counts the message and answers 250; nothing is stored.
"""

from __future__ import annotations

import asyncio
import signal

import aiosmtpd
from _common import Counter, parse_args
from aiosmtpd.smtp import SMTP, Envelope, Session


class CountingHandler:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.counter.add(len(content))
        return "250 OK"


async def main() -> None:
    args = parse_args(__doc__ or "")
    counter = Counter(f"aiosmtpd {aiosmtpd.__version__}")
    handler = CountingHandler(counter)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR2, counter.dump, args.stats)
    # 64 MiB: well above the biggest benchmark message (5 MiB); hostname fixed so aiosmtpd
    # does not call socket.getfqdn() per connection.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench", data_size_limit=64 << 20),
        "127.0.0.1",
        args.port,
        backlog=1024,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
