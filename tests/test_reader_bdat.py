"""The reader twins in BDAT mode (RFC 3030): count framing, DATA's line-ending/NUL/size rules."""

from __future__ import annotations

import pytest

from smtpx.errors import BareLineEndingError, LimitError, NulByteError
from tests.impls import Impl


def run(impl: Impl, chunks: list[bytes], limit: int = 1 << 20, **kw: bool) -> bytes:
    reader = impl.reader_cls()(limit, bdat=True, **kw)
    for chunk in chunks:
        assert reader.feed(chunk) == len(chunk)
        assert not reader.done
    reader.finish()
    assert reader.done
    return reader.result()


def test_no_unstuffing_no_end_marker(impl: Impl) -> None:
    data = b"Subject: x\r\n\r\n.leading dot\r\n.\r\nafter the dot line\r\n"
    assert run(impl, [data]) == data


def test_crlf_split_between_chunks_is_a_crlf(impl: Impl) -> None:
    assert run(impl, [b"a\r", b"\nb\r\n"]) == b"a\r\nb\r\n"


@pytest.mark.parametrize("data", [b"a\rb\r\n", b"a\nb\r\n", b"a\r\n\r", b"\n", b"x\r"])
def test_bare_line_endings_refuse_the_message(impl: Impl, data: bytes) -> None:
    for cut in range(len(data) + 1):
        with pytest.raises(BareLineEndingError):
            run(impl, [data[:cut], data[cut:]])


@pytest.mark.parametrize(
    ("data", "normalized"),
    [
        (b"a\rb", b"a\r\nb"),
        (b"a\nb\r\n", b"a\r\nb\r\n"),
        (b"x\r", b"x\r\n"),
        (b"\r\r\n", b"\r\n\r\n"),
    ],
)
def test_normalize(impl: Impl, data: bytes, normalized: bytes) -> None:
    for cut in range(len(data) + 1):
        assert run(impl, [data[:cut], data[cut:]], normalize=True) == normalized


def test_nul_refused_unless_allowed(impl: Impl) -> None:
    with pytest.raises(NulByteError):
        run(impl, [b"a\r\n", b"\0\r\n"])
    assert run(impl, [b"a\0\r\n"], allow_nul=True) == b"a\0\r\n"


def test_limit_across_chunks(impl: Impl) -> None:
    reader = impl.reader_cls()(10, bdat=True)
    reader.feed(b"123456")
    assert reader.size == 6
    reader.feed(b"78901")
    assert reader.size == 11
    reader.finish()
    with pytest.raises(LimitError):
        reader.result()


def test_empty_message_and_finish_twice(impl: Impl) -> None:
    reader = impl.reader_cls()(10, bdat=True)
    reader.finish()
    reader.finish()
    assert reader.result() == b""
    assert reader.feed(b"x") == 0


def test_finish_refused_in_data_mode(impl: Impl) -> None:
    with pytest.raises(RuntimeError):
        impl.reader_cls()(10).finish()


def test_result_before_finish(impl: Impl) -> None:
    reader = impl.reader_cls()(10, bdat=True)
    reader.feed(b"ab")
    with pytest.raises(RuntimeError):
        reader.result()


def test_one_byte_chunks_cost_no_object_per_byte(impl: Impl) -> None:
    # 200,000 one-byte chunks: the kept message must not be 200,000 bytes objects (~40 bytes
    # each, 8 MB); it is gathered, so the peak stays near the message size.
    import tracemalloc  # noqa: PLC0415 (only this test)

    reader = impl.reader_cls()(1 << 20, bdat=True)
    pieces = [bytes([97 + i % 26]) for i in range(200_000)]
    tracemalloc.start()
    try:
        for piece in pieces:
            reader.feed(piece)
        reader.finish()
        data = reader.result()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data == b"".join(pieces)
    assert peak < 3 * len(data), peak
