"""SIGTERM to the real ``smtpx serve`` during DATA and during the handler.

A service manager stopping smtpx must not lose or double a message: a client in the middle
of DATA finishes, a message whose handler is running gets the handler's reply, and each is
stored exactly once before the process exits 0. ``tests/edges/test_shutdown_edges.py`` shows
the same for ``Server.shutdown`` in-process; here the signal reaches the CLI's runner.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.authres.dnsserver import DNSServerFactory
from tests.edges.edgeutil import Conn, wait_until
from tests.faults.cli import CLI

BODY = b"Subject: during shutdown\r\nFrom: a@slow.test\r\n\r\n" + b"line\r\n" * 2000


def open_data(c: Conn, sender: str = "a@b.example") -> None:
    assert c.reply().startswith(b"220")
    assert c.cmd(b"EHLO client.test\r\n").startswith(b"250")
    assert c.cmd(f"MAIL FROM:<{sender}>\r\n".encode()).startswith(b"250")
    assert c.cmd(b"RCPT TO:<r@x.example>\r\n").startswith(b"250")
    assert c.cmd(b"DATA\r\n").startswith(b"354")


def test_sigterm_during_data(tmp_path: Path) -> None:
    with CLI(tmp_path) as cli:
        c, idle = Conn(cli.port), Conn(cli.port)
        try:
            assert idle.reply().startswith(b"220")
            open_data(c)
            half = len(BODY) // 2
            c.send(BODY[:half])
            cli.terminate()
            assert idle.reply().startswith(b"421 4.3.0")  # between commands: told and closed
            assert c.pending(0.3) == b""  # the message in DATA is not interrupted
            c.send(BODY[half:] + b".\r\n")
            assert c.reply().startswith(b"250 ")
            assert c.reply().startswith(b"421 4.3.0")
            assert c.eof()
        finally:
            c.close()
            idle.close()
        assert cli.wait() == 0, cli.stderr
    (stored,) = cli.stored()
    assert stored.endswith(BODY)
    assert "Traceback" not in cli.stderr


def test_sigterm_while_the_handler_runs(tmp_path: Path, dns_server: DNSServerFactory) -> None:
    # The sender's DNS never answers, so the authres middleware holds the message for the
    # resolver's 5 s timeout: the handler chain is running when the signal arrives.
    dns = dns_server({}, timeout_names=["slow.test", "_dmarc.slow.test"])
    with CLI(tmp_path, "--authres", "--dns-server", f"127.0.0.1:{dns.port}") as cli:
        c = Conn(cli.port)
        try:
            open_data(c, "a@slow.test")
            c.send(BODY + b".\r\nQUIT\r\n")
            assert wait_until(lambda: any(q[0] == "slow.test." for q in dns.queries))
            signalled = time.monotonic()
            cli.terminate()
            assert c.reply().startswith(b"250 ")  # the handler's decision still reaches us
            waited = time.monotonic() - signalled
            assert c.reply().startswith(b"221")  # the pipelined QUIT
            assert c.eof()
        finally:
            c.close()
        assert cli.wait() == 0, cli.stderr
    (stored,) = cli.stored()
    assert stored.endswith(BODY)
    assert b"spf=temperror" in stored
    assert "Traceback" not in cli.stderr
    print(f"250 came {waited:.1f}s after SIGTERM")
