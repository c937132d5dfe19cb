"""The compiled protocol core against the pure one: the same bytes, the same events and replies.

``smtpx.protocol._connection_c`` is ``_connection.py`` compiled by Cython with
``_connection_c.pxd`` (issue 11); ``smtpx.protocol`` picks it with the compiled twins. Marked
``compiled``: ``pytest --no-extensions`` deselects these. The rest of ``tests/protocol`` runs on
whichever core is active (``SMTPX_NO_EXTENSIONS=1`` for the pure one).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpx import responses as R
from smtpx.protocol import Message, NeedData, ProtocolConfig, StartTLS, _connection

pytestmark = pytest.mark.compiled

CONFIGS = [
    ProtocolConfig(hostname="mx.test"),
    ProtocolConfig(hostname="mx.test", max_size=64, max_recipients=2, max_errors=3),
    ProtocolConfig(hostname="mx.test", tls_available=True, lmtp=True, dsn=True),
    ProtocolConfig(hostname="mx.test", normalize_line_endings=True, max_junk_commands=2),
]
SESSION = (
    b"EHLO c.test\r\nMAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<r@x.y>\r\n"
    b"RCPT TO:<postmaster>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
    b"MAIL FROM:<> \r\nRCPT TO:<q@x.y>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\n"
    b"NOOP\r\nRSET\r\nVRFY x\r\nHELP\r\nSTARTTLS\r\nbogus\r\nMAIL FROM:a\r\nQUIT\r\n"
)


def compiled_core() -> ModuleType:
    return importlib.import_module("smtpx.protocol._connection_c")


def run(module: ModuleType, config: ProtocolConfig, chunks: list[bytes]) -> list[object]:
    """Everything a driver sees: events, replies, states, or the exception, in order."""
    conn = module.Connection(config)
    conn.greeting()
    seen: list[object] = []
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        for _ in range(len(chunk) + 8):
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            seen.append(event)
            if isinstance(event, Message):
                conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
            elif isinstance(event, StartTLS):
                conn.tls_established()
        seen += [conn.state, conn.data_to_send(), conn.buffered, conn.in_transaction]
    return seen


def cuts(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i = [], 0
    for size in sizes:
        out.append(data[i : i + size])
        i += size
    return [*out, data[i:]]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("step", [1, 3, 7, 64, 10_000])
def test_a_whole_session_gives_the_same_events_and_replies(
    config: ProtocolConfig, step: int
) -> None:
    chunks = [SESSION[i : i + step] for i in range(0, len(SESSION), step)]
    assert run(compiled_core(), config, chunks) == run(_connection, config, chunks)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(SESSION.split(b"\r\n")) | st.binary(max_size=40), max_size=25).map(
        b"\r\n".join
    ),
    st.lists(st.integers(1, 50), max_size=6),
    st.sampled_from(CONFIGS),
)
def test_any_byte_stream_gives_the_same_events_and_replies(
    stream: bytes, sizes: list[int], config: ProtocolConfig
) -> None:
    chunks = cuts(stream, sizes)
    assert run(compiled_core(), config, chunks) == run(_connection, config, chunks)


def test_the_pxd_declares_every_slot_of_the_pure_connection() -> None:
    # A field added to Connection.__slots__ but not to the .pxd is an AttributeError in the
    # compiled core only: keep the two lists equal.
    pxd = Path(_connection.__file__).with_name("_connection_c.pxd").read_text(encoding="utf-8")
    declared = set(re.findall(r"^\s+cdef public \w+ (\w+)$", pxd, re.M))
    assert declared == set(_connection.Connection.__slots__)


def test_the_compiled_core_is_a_cdef_class_with_typed_fields() -> None:
    # The .pxd was applied (Cython finds it by module name): fields are C members, not slots.
    assert type(compiled_core().Connection.__dict__["_pos"]).__name__ == "getset_descriptor"


def test_the_active_core_is_the_compiled_one_with_the_compiled_twins() -> None:
    import smtpx  # noqa: PLC0415
    from smtpx import protocol  # noqa: PLC0415

    expected = "_connection_c" if smtpx.IMPLEMENTATION == "cython" else "_connection"
    assert protocol.Connection.__module__ == f"smtpx.protocol.{expected}"
