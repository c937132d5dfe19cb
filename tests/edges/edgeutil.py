"""Helpers for the production-edge tests (own basename: test dirs share sys.path)."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import trustme


class TLSMaterial:
    """A private CA with a server certificate for mx.test/127.0.0.1 and a client certificate."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert("mx.test", "127.0.0.1", "localhost")
        self.client_cert = self.ca.issue_cert("client.test")
        self.dir = directory
        self.cert_pem = directory / "server.pem"
        self.key_pem = directory / "server.key"
        self.ca_pem = directory / "ca.pem"
        self.server_cert.cert_chain_pems[0].write_to_path(str(self.cert_pem))
        self.server_cert.private_key_pem.write_to_path(str(self.key_pem))
        self.ca.cert_pem.write_to_path(str(self.ca_pem))

    def server_context(self, *, client_certs: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        if client_certs:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            self.ca.configure_trust(ctx)
        return ctx

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if with_cert:
            self.client_cert.configure_cert(ctx)
        return ctx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    def up() -> bool:
        try:
            socket.create_connection((host, port), timeout=1).close()
        except OSError:
            return False
        return True

    if not wait_until(up, timeout):
        raise TimeoutError(f"nothing listens on {host}:{port}")


class Conn:
    """A byte-level client over a plain socket that can switch to TLS in place."""

    def __init__(self, port: int, host: str = "127.0.0.1", source: str | None = None) -> None:
        src = (source, 0) if source else None
        self.sock: socket.socket = socket.create_connection(
            (host, port), timeout=10, source_address=src
        )
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def reply(self) -> bytes:
        """One complete (possibly multiline) reply; b"" on EOF."""
        while True:
            lines = self.buf.split(b"\r\n")
            for i, line in enumerate(lines[:-1]):
                if line[3:4] != b"-":
                    out = b"\r\n".join(lines[: i + 1]) + b"\r\n"
                    self.buf = self.buf[len(out) :]
                    return out
            if not self._fill():
                out, self.buf = self.buf, b""
                return out

    def cmd(self, data: bytes) -> bytes:
        self.send(data)
        return self.reply()

    def open_data(self) -> None:
        """Greeting, EHLO, MAIL and RCPT, then DATA: leaves the client inside the message."""
        self.reply()
        self.cmd(b"EHLO client.test\r\n")
        self.cmd(b"MAIL FROM:<a@b.example>\r\n")
        self.cmd(b"RCPT TO:<r@x.example>\r\n")
        assert self.cmd(b"DATA\r\n").startswith(b"354")

    def pending(self, wait: float = 0.3) -> bytes:
        """Whatever arrives within ``wait`` seconds (b"" if nothing)."""
        ready, _, _ = select.select([self.sock], [], [], wait)
        if ready:
            self._fill()
        out, self.buf = self.buf, b""
        return out

    def eof(self) -> bool:
        """True once the server has closed (reads until EOF, bounded by the socket timeout)."""
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        return True

    def starttls(self, ctx: ssl.SSLContext, server_hostname: str = "mx.test") -> None:
        assert not self.buf, self.buf
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def connect(port: int, source: str | None = None) -> Iterator[Conn]:
    conn = Conn(port, source=source)
    try:
        yield conn
    finally:
        conn.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """Terminate a process this test started (by its PID) and reap it."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout)
