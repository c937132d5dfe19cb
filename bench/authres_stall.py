"""How long one hostile message stalls the event loop inside the authres middleware (issue 9).

A real smtpx server with ``authentication_results`` runs on loopback, its resolver pointed at the
loopback DNS server of ``tests/authres/dnsserver.py``. One client sends the hostile message while
a second, already connected client sends NOOPs back to back; the script prints the time the
hostile message took and the longest NOOP round trip seen meanwhile (the stall everyone else saw).

Run from the repository root::

    python -m bench.authres_stall spf 40000     # TXT "v=spf1 include:x.<n x a>!" (item 2)
    python -m bench.authres_stall from 8000000  # From: of n octets of addresses (item 7)
    python -m bench.authres_stall groups 5000   # From: with n nested "a:" groups (item 7)
    python -m bench.authres_stall body 8000000  # control: n octets in the body instead
"""

from __future__ import annotations

import asyncio
import smtplib
import sys
import threading
import time
from typing import Any

from smtpx import Server
from smtpx.authres import _dns
from smtpx.authres._middleware import authentication_results
from smtpx.envelope import Envelope
from smtpx.responses import Response
from tests.authres.dnsserver import LoopbackDNSServer

HOST = "mx.test"


def _txt(text: str) -> str:
    return " ".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))


def _case(kind: str, n: int) -> tuple[dict[str, list[tuple[str, str]]], bytes]:
    zone: dict[str, list[tuple[str, str]]] = {
        "evil.test": [("TXT", _txt("v=spf1 -all"))],
        "_dmarc.evil.test": [("TXT", '"v=DMARC1; p=reject"')],
    }
    head = b"To: bob@mx.test\r\nSubject: x\r\n"
    if kind == "spf":
        zone["evil.test"] = [("TXT", _txt("v=spf1 include:x." + "a" * n + "!"))]
        return zone, b"From: a@evil.test\r\n" + head + b"\r\nhi\r\n"
    if kind == "from":
        addrs = b", ".join(b"a%d@evil.test" % i for i in range(n // 16))
        return zone, b"From: " + addrs[:n] + b"\r\n" + head + b"\r\nhi\r\n"
    if kind == "body":  # control: the same size in the body, a plain From
        addrs = b", ".join(b"a%d@evil.test" % i for i in range(n // 16))
        return zone, b"From: a@evil.test\r\n" + head + b"\r\n" + addrs[:n] + b"\r\n"
    if kind == "groups":
        return (
            zone,
            b"From: " + b"a:" * n + b"a@evil.test" + b";" * n + b"\r\n" + head + b"\r\nhi\r\n",
        )
    raise SystemExit(f"unknown case {kind!r}")


async def main(kind: str, n: int) -> None:
    zone, message = _case(kind, n)
    with LoopbackDNSServer(zone) as dns:

        async def handler(envelope: Envelope) -> Response | None:
            return None

        server = Server(
            hostname=HOST,
            addr="127.0.0.1:0",
            handler=handler,
            max_size=64 * 1024 * 1024,
            middlewares=[
                authentication_results(
                    HOST, resolver=_dns.resolver_at(dns.host, dns.port, timeout=60), timeout=120
                )
            ],
        )
        await server.start()
        done = threading.Event()
        result: dict[str, Any] = {}

        def hostile() -> None:
            with smtplib.SMTP("127.0.0.1", server.port, timeout=300) as client:
                client.ehlo("client.evil.test")
                client.mail("a@evil.test")
                client.rcpt("bob@mx.test")
                client.putcmd("data")
                code, _ = client.getreply()
                assert code == 354, code
                client.send(message.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
                start = time.perf_counter()
                result["reply"] = client.getreply()
                result["after_dot"] = time.perf_counter() - start
            done.set()

        def noops() -> None:
            worst = 0.0
            count = 0
            with smtplib.SMTP("127.0.0.1", server.port, timeout=300) as other:
                other.noop()
                sender = threading.Thread(target=hostile)
                sender.start()
                while not done.is_set():
                    start = time.perf_counter()
                    other.noop()
                    worst = max(worst, time.perf_counter() - start)
                    count += 1
                sender.join()
            result["worst_noop"] = worst
            result["noops"] = count

        try:
            await asyncio.to_thread(noops)
        finally:
            await server.shutdown(5)
    print(
        f"{kind} n={n}: reply {result['reply']!r}; reply after the dot "
        f"{result['after_dot']:.3f} s; worst NOOP round trip {result['worst_noop'] * 1e3:.1f} ms "
        f"over {result['noops']} NOOPs"
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
