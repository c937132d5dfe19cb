"""Envelope streaming: open(), chunks(), data, head(), replace_head(); in memory and spooled."""

from __future__ import annotations

import asyncio
import errno
import io
import os
from pathlib import Path

import pytest

from smtpx._spool import Spool
from smtpx.envelope import Envelope

MESSAGE = b"Subject: hi\r\nFrom: a@example.org\r\n\r\n" + b"".join(
    b"line %d of the body\r\n" % i for i in range(5000)
)


def _spooled(tmp_path: Path, message: bytes = MESSAGE) -> tuple[Envelope, Spool]:
    spool = Spool(str(tmp_path))
    spool.write(message)
    envelope = Envelope()
    envelope._set_spool(spool)
    return envelope, spool


def _collect(envelope: Envelope, size: int = 65536) -> bytes:
    async def run() -> bytes:
        return b"".join([c async for c in envelope.chunks(size)])

    return asyncio.run(run())


@pytest.mark.parametrize("spooled", [False, True])
def test_every_view_gives_the_same_bytes(tmp_path: Path, spooled: bool) -> None:
    if spooled:
        envelope, _ = _spooled(tmp_path)
    else:
        envelope = Envelope(data=MESSAGE)
    envelope.prepend_header("Received", "from x by y")
    envelope.prepend_header("X-Top", "1")
    want = b"X-Top: 1\r\nReceived: from x by y\r\n" + MESSAGE
    assert envelope.spooled is spooled
    assert len(envelope) == len(want)
    with envelope.open() as f:
        assert f.read() == want
        f.seek(5)
        assert f.read(20) == want[5:25]
        f.seek(-7, io.SEEK_END)
        assert f.read() == want[-7:]
        f.seek(len(want) - 3)
        assert f.read(100) == want[-3:]
    for size in (1, 7, 100, 65536):
        if size == 1 and spooled:
            continue  # one worker-thread read per byte: slow, and proves nothing more
        assert _collect(envelope, size) == want
    assert envelope.data == want
    assert envelope.head(12) == want[:12]
    assert envelope.head(len(want) + 100) == want


def test_replace_head_on_a_spooled_message_keeps_the_body_on_disk(tmp_path: Path) -> None:
    envelope, spool = _spooled(tmp_path)
    envelope.prepend_header("Received", "r")
    whole = b"Received: r\r\n" + MESSAGE
    end = whole.index(b"\r\n\r\n") + 2
    head = envelope.head(end)
    envelope.replace_head(end, head.replace(b"Subject: hi\r\n", b""))
    want = b"Received: r\r\nFrom: a@example.org\r\n\r\n" + whole[end + 2 :]
    assert envelope.spooled
    assert len(envelope) == len(want)
    with envelope.open() as f:
        assert f.read() == want
    assert _collect(envelope) == want
    # Within the prepended part only.
    envelope.replace_head(3, b"XYZ")
    assert envelope.data[:5] == b"XYZei"
    assert spool.size == len(MESSAGE)


def test_data_setter_makes_an_in_memory_message(tmp_path: Path) -> None:
    envelope, spool = _spooled(tmp_path)
    envelope.data = b"new\r\n"
    assert not envelope.spooled
    assert envelope.spool_path is None
    assert envelope.data == b"new\r\n"
    spool.close()


def test_a_view_opened_during_handling_outlives_the_spool(tmp_path: Path) -> None:
    envelope, spool = _spooled(tmp_path)
    assert envelope.spool_path is not None
    f = envelope.open()
    spool.close()  # what the session does after the handler returns
    assert os.listdir(tmp_path) == []
    with f:
        assert f.read() == MESSAGE
    with pytest.raises(ValueError, match="closed"):
        envelope.open()


def test_chunks_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _collect(Envelope(data=b"x"), 0)


@pytest.mark.parametrize("target", ["file", "bytesio"])
@pytest.mark.parametrize("spooled", [False, True])
def test_write_to_copies_the_whole_message(tmp_path: Path, spooled: bool, target: str) -> None:
    # A real file takes the kernel copy (sendfile); a BytesIO has no descriptor: pieces.
    if spooled:
        envelope, _ = _spooled(tmp_path)
    else:
        envelope = Envelope(data=MESSAGE)
    envelope.prepend_header("Received", "r")
    end = len(envelope.head(200).split(b"\r\n\r\n")[0]) + 2
    envelope.replace_head(end, envelope.head(end).replace(b"Subject: hi\r\n", b"X: 1\r\n"))
    want = (
        b"Received: r\r\nX: 1\r\nFrom: a@example.org\r\n"
        + MESSAGE[MESSAGE.index(b"\r\n\r\n") + 2 :]
    )
    if target == "file":
        out_path = tmp_path / "out.eml"
        with out_path.open("xb") as f:
            f.write(b">")
            assert envelope.write_to(f) == len(want)
            f.write(b"<")
        assert out_path.read_bytes() == b">" + want + b"<"
    else:
        buffer = io.BytesIO()
        assert envelope.write_to(buffer) == len(want)
        assert buffer.getvalue() == want


def test_write_to_falls_back_to_pieces_where_sendfile_refuses_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # macOS sends only to sockets (ENOTSOCK); old kernels say EINVAL: nothing was copied then.
    def refuse(*args: object) -> int:
        raise OSError(errno.ENOTSOCK, os.strerror(errno.ENOTSOCK))

    monkeypatch.setattr(os, "sendfile", refuse)
    envelope, _ = _spooled(tmp_path)
    out_path = tmp_path / "out.eml"
    with out_path.open("xb") as f:
        assert envelope.write_to(f) == len(MESSAGE)
    assert out_path.read_bytes() == MESSAGE
