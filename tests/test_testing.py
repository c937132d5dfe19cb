"""smtpx.testing: Controller, AsyncController and the pytest plugin, over real loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import importlib.metadata
import smtplib
import socket
import sys
import threading
from pathlib import Path

import aiosmtplib
import pytest

from smtpx import Envelope, Response, Server, ServerState, new_response
from smtpx.testing import AsyncController, Controller

pytest_plugins = ("pytester",)

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
ROOT = Path(__file__).resolve().parent.parent


def connect_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "smtpx-controller"]


def test_start_serves_at_once_and_stop_joins_the_thread() -> None:
    with Controller() as smtpd:
        assert smtpd.server.state is ServerState.RUNNING
        assert smtpd.host == "127.0.0.1" and smtpd.port > 0
        # No retry loop: the greeting comes on the first connection after start().
        with socket.create_connection((smtpd.host, smtpd.port), timeout=5) as sock:
            assert sock.recv(100).startswith(b"220 smtpx.test")
        port = smtpd.port
        assert len(server_threads()) == 1
    assert smtpd.server.state.value == "stopped"  # (.value: mypy narrowed state to RUNNING)
    assert server_threads() == []
    assert connect_refused(port)
    assert smtpd.stop() is True  # a second stop is harmless


def test_envelopes_collected_with_smtplib() -> None:
    with Controller() as smtpd:
        with smtpd.smtp() as client:
            client.sendmail("a@example.org", ["b@example.org", "c@example.org"], MESSAGE)
            client.sendmail("d@example.org", ["e@example.org"], MESSAGE)
        first, second = smtpd.envelopes  # recorded before the 250 reached the client
    assert first.mail_from is not None and first.mail_from.address == "a@example.org"
    assert [a.address for a in first.rcpt_to] == ["b@example.org", "c@example.org"]
    assert first.data == MESSAGE
    assert first.helo == "client.test"
    assert second.mail_from is not None and second.mail_from.address == "d@example.org"


def test_only_accepted_envelopes_are_recorded_and_clear_forgets() -> None:
    async def handler(envelope: Envelope) -> Response | None:
        if envelope.rcpt_to[0].address.startswith("reject"):
            return new_response(550, "no thanks", "5.7.1")
        return None

    with Controller(handler) as smtpd, smtpd.smtp() as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@example.org", ["reject@example.org"], MESSAGE)
        assert refused.value.smtp_code == 550
        client.sendmail("a@example.org", ["ok@example.org"], MESSAGE)
        (accepted,) = smtpd.envelopes
        assert accepted.rcpt_to[0].address == "ok@example.org"
        smtpd.clear()
        assert smtpd.envelopes == []


def test_plain_function_handler_and_server_options() -> None:
    seen: list[bytes] = []

    def handler(envelope: Envelope) -> Response | None:  # runs in a worker thread
        seen.append(envelope.data)
        return None

    with Controller(handler, hostname="mx.example", max_size=100) as smtpd:
        with smtpd.smtp() as client:
            code, reply = client.ehlo()
            assert code == 250 and reply.startswith(b"mx.example")
            assert client.esmtp_features["size"] == "100"
            client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        assert seen == [MESSAGE]
        assert len(smtpd.envelopes) == 1


def test_wait_for_envelopes_from_another_thread() -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for _ in range(3):
                client.sendmail("a@example.org", ["b@example.org"], MESSAGE)

    with Controller() as smtpd:
        port = smtpd.port
        sender = threading.Thread(target=send)
        sender.start()
        assert len(smtpd.wait_for_envelopes(3, timeout=10)) == 3
        sender.join(10)
        with pytest.raises(TimeoutError, match="3 of 4"):
            smtpd.wait_for_envelopes(4, timeout=0.2)


def test_bind_error_is_raised_in_the_calling_thread() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        controller = Controller(port=port)
        with pytest.raises(OSError) as caught:
            controller.start()
        assert caught.value.errno == errno.EADDRINUSE
    assert controller.server.state is ServerState.START_ERROR
    assert server_threads() == []
    assert controller.stop() is True


class FailingServer(Server):
    async def start(self, *, sock: socket.socket | None = None) -> None:  # type: ignore[override]
        raise RuntimeError("certificate store unreadable")


class HangingServer(Server):
    async def start(self, *, sock: socket.socket | None = None) -> None:  # type: ignore[override]
        await asyncio.sleep(3600)


def test_startup_error_is_raised_in_the_calling_thread() -> None:
    with pytest.raises(RuntimeError, match="certificate store unreadable"):
        Controller(server_class=FailingServer).start()
    assert server_threads() == []


def test_unresolvable_host_is_a_startup_error() -> None:
    with pytest.raises(OSError):
        Controller(host="smtpx-no-such-host.invalid").start()
    assert server_threads() == []


def test_startup_that_hangs_times_out_and_leaves_no_thread() -> None:
    controller = Controller(server_class=HangingServer, ready_timeout=0.3)
    with pytest.raises(TimeoutError, match="did not start"):
        controller.start()
    assert server_threads() == []


def test_start_twice_is_refused() -> None:
    with Controller() as smtpd, pytest.raises(RuntimeError, match="already started"):
        smtpd.start()


def test_stop_is_graceful_for_an_idle_session() -> None:
    with Controller() as smtpd, socket.create_connection(("127.0.0.1", smtpd.port)) as sock:
        sock.settimeout(10)
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(b"EHLO client.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        assert smtpd.stop() is True
        assert reader.readline().startswith(b"421 4.3.0")
        assert reader.readline() == b""


def test_call_runs_on_the_server_loop() -> None:
    async def clients(server: Server) -> int:
        return server.active_clients

    with Controller() as smtpd, smtpd.smtp() as client:
        client.noop()
        assert smtpd.call(clients(smtpd.server)) == 1


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    with Controller(host="::1") as smtpd, smtplib.SMTP("::1", smtpd.port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        (envelope,) = smtpd.envelopes
        assert envelope.remote_addr[0] == "::1"


def test_addr_is_refused() -> None:
    with pytest.raises(TypeError, match="host and port"):
        Controller(addr="127.0.0.1:0")


# ---------------------------------------------------------------- AsyncController
def test_async_controller_with_aiosmtplib() -> None:
    async def main() -> tuple[list[Envelope], ServerState]:
        async with AsyncController() as smtpd:
            await aiosmtplib.send(
                MESSAGE,
                sender="a@example.org",
                recipients=["b@example.org"],
                hostname=smtpd.host,
                port=smtpd.port,
                start_tls=False,
            )
            envelopes = await smtpd.wait_for_envelopes(1, timeout=10)
            with pytest.raises(TimeoutError, match="1 of 2"):
                await smtpd.wait_for_envelopes(2, timeout=0.2)
        return envelopes, smtpd.server.state

    (envelope,), state = asyncio.run(main())
    assert envelope.data == MESSAGE
    assert state is ServerState.STOPPED


def test_async_controller_wait_wakes_on_arrival() -> None:
    async def main() -> int:
        async with AsyncController() as smtpd:
            waiting = asyncio.ensure_future(smtpd.wait_for_envelopes(2, timeout=10))
            for _ in range(2):
                await aiosmtplib.send(
                    MESSAGE,
                    sender="a@example.org",
                    recipients=["b@example.org"],
                    hostname=smtpd.host,
                    port=smtpd.port,
                    start_tls=False,
                )
            return len(await waiting)

    assert asyncio.run(main()) == 2


def test_async_controller_bind_error() -> None:
    async def main(port: int) -> None:
        async with AsyncController(port=port):
            pytest.fail("started on a port in use")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError) as caught:
            asyncio.run(main(taken.getsockname()[1]))
        assert caught.value.errno == errno.EADDRINUSE


# ---------------------------------------------------------------- pytest plugin
PLUGIN_TEST = """
from __future__ import annotations

import pytest

from smtpx.testing import Controller


def test_default(smtpx_server: Controller) -> None:
    with smtpx_server.smtp() as client:
        client.sendmail("a@example.org", ["b@example.org"], b"Subject: x\\r\\n\\r\\nbody\\r\\n")
    (envelope,) = smtpx_server.envelopes
    assert envelope.data.endswith(b"body\\r\\n")


@pytest.mark.smtpx_server(hostname="marked.example", max_size=64)
def test_marked_options(smtpx_server: Controller) -> None:
    with smtpx_server.smtp() as client:
        assert client.ehlo()[1].startswith(b"marked.example")
        assert client.esmtp_features["size"] == "64"


def test_factory(smtpx_server_factory) -> None:
    one = smtpx_server_factory()
    two = smtpx_server_factory(hostname="two.example")
    assert one.port != two.port
"""


def plugin_args() -> list[str]:
    # Where smtpx is installed the entry point loads the plugin already; naming it again would
    # register the module twice.
    installed = any(
        ep.value == "smtpx.pytest_plugin"
        for ep in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if installed else ["-p", "smtpx.pytest_plugin"]


def test_pytest_plugin_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_uses_plugin=PLUGIN_TEST)
    result = pytester.runpytest(*plugin_args(), "--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert server_threads() == []  # every fixture's server was stopped


def test_pytest11_entry_point_is_declared() -> None:
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415 (stdlib from 3.11)
    else:
        import tomli as tomllib  # noqa: PLC0415 (pytest's own dependency on 3.10)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"smtpx": "smtpx.pytest_plugin"}
