"""A real HAProxy (Debian package) in front of smtpx, with send-proxy and send-proxy-v2."""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpx.middleware import add_received_header
from tests.edges.edgeutil import free_port, stop_process, wait_for_port, wait_until
from tests.server.serverthread import ServerThread

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
EXAMPLE = Path(__file__).parents[2] / "examples" / "haproxy.cfg"
MakeServer = Callable[..., ServerThread]
CLIENT_IP = "127.0.0.2"  # differs from the proxy's own 127.0.0.1

CONFIG = """
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp_in
    bind 127.0.0.1:{listen}
    default_backend smtpx
backend smtpx
{servers}
"""


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Callable[[str], int]]:
    assert Path(HAPROXY).exists(), "haproxy is not installed (apt-get install haproxy)"
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: str) -> int:
        port = free_port()
        cfg = tmp_path / f"haproxy-{len(procs)}.cfg"
        cfg.write_text(config.replace("{listen}", str(port)))
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        procs.append(proc)
        wait_for_port(port)
        return port

    yield start
    for proc in procs:
        stop_process(proc)


def send_via(port: int, subject: str) -> int:
    """Send one message through the proxy from 127.0.0.2; returns the client's port."""
    with smtplib.SMTP(
        "127.0.0.1",
        port,
        local_hostname="client.test",
        source_address=(CLIENT_IP, 0),
        timeout=10,
    ) as client:
        assert client.sock is not None
        host, sport = client.sock.getsockname()[:2]
        assert host == CLIENT_IP
        msg = f"Subject: {subject}\r\n\r\nthrough haproxy\r\n"
        assert client.sendmail("a@b.example", ["r@x.example"], msg) == {}
    return int(sport)


@pytest.mark.parametrize(("option", "version"), [("send-proxy", 1), ("send-proxy-v2", 2)])
def test_haproxy_reports_the_client_address(
    make_server: MakeServer, haproxy: Callable[[str], int], option: str, version: int
) -> None:
    srv = make_server(proxy_on=True, middlewares=[add_received_header()])
    port = haproxy(CONFIG.replace("{servers}", f"    server s1 127.0.0.1:{srv.port} {option}"))
    # wait_for_port's probe connection went through too; it sent no mail.
    sport = send_via(port, option)
    (env,) = srv.received
    assert env.remote_addr == (CLIENT_IP, sport)
    assert env.local_addr == ("127.0.0.1", port)
    assert env.values["proxy"].version == version
    first = env.data.split(b"\r\n")[0]
    assert first == b"Received: from client.test ([127.0.0.2])"


def test_shipped_example_config_is_valid() -> None:
    result = subprocess.run(
        [HAPROXY, "-c", "-f", str(EXAMPLE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_example_spreads_over_several_instances(
    make_server: MakeServer, haproxy: Callable[[str], int]
) -> None:
    servers = [make_server(proxy_on=True, hostname=f"mx{i}.test") for i in (1, 2, 3)]
    config = EXAMPLE.read_text()
    config = config.replace("bind :25", "bind 127.0.0.1:{listen}")
    config = config.replace("log stderr format short local0 info", "")
    ports = iter(s.port for s in servers)
    config = re.sub(r"127\.0\.0\.1:1002[5-7]", lambda _: f"127.0.0.1:{next(ports)}", config)
    port = haproxy(config)
    sports = {send_via(port, f"n{i}") for i in range(6)}
    got = [env for s in servers for env in s.received]
    assert len(got) == 6
    assert {env.remote_addr for env in got} == {(CLIENT_IP, p) for p in sports}
    # leastconn over sequential sessions: more than one instance served mail.
    assert sum(1 for s in servers if s.received) >= 2
    # The SMTP health checks (PROXY v2 LOCAL + HELO) reached every instance.
    assert wait_until(lambda: all(s.server._next_id > len(s.received) for s in servers))
