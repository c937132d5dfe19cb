"""The README's submission server (examples/submission.py) works as its comments say."""

from __future__ import annotations

import asyncio
import importlib.util
import smtplib
import threading
from pathlib import Path

from smtpx.auth import hash_password
from tests.edges.edgeutil import TLSMaterial

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "submission.py"


def test_submission_example(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("submission_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tls = TLSMaterial(tmp_path)
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('pw-alice', ln=10)}\n")
    server = module.build(str(tls.cert_pem), str(tls.key_pem), str(users), "127.0.0.1:0")
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_until_complete(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.starttls(context=tls.client_context())
            client.ehlo()
            assert client.mail("alice@example.org")[0] == 530
            client.login("alice", "pw-alice")
            client.mail("alice@example.org")
            assert client.rcpt("carol@example.org") == (550, b"5.1.1 No such user here")
            assert client.rcpt("bob@example.org")[0] == 250
            assert client.rcpt("someone@elsewhere.example")[0] == 250
            assert client.data(b"Subject: hi\r\n\r\nhello\r\n")[0] == 250
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("auth")  # not before STARTTLS
    finally:
        asyncio.run_coroutine_threadsafe(server.shutdown(5), loop).result(10)
        thread.join(10)
        loop.close()
