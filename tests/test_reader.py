"""DATA reader behaviour (RFC 5321 4.1.1.4, 4.5.2, 2.3.8), run against both twins.

Vectors come from the Go package's reader (reference section 3), adapted to smtpx's rules:
CRLF line endings are kept, and a bare CR or LF never ends DATA (SMTP smuggling); the message
is rejected, or with ``normalize=True`` the bare line end becomes CRLF.
"""

from __future__ import annotations

import tracemalloc

import pytest

from smtpx._abc import DataReaderLike
from smtpx.errors import BareLineEndingError, LimitError, NulByteError
from tests.impls import Impl
from tests.scaling import assert_linear

BIG = 1 << 30
Outcome = tuple[bytes | type[Exception], int]


def finished(reader: DataReaderLike) -> bool:
    """``reader.done``, read through a call so mypy does not narrow it between feeds."""
    return reader.done


def read(reader: DataReaderLike, chunks: list[bytes], *, stop_at_done: bool = True) -> Outcome:
    """Feed ``chunks``; return the message (or the exception type) and the bytes consumed."""
    consumed = 0
    for chunk in chunks:
        used = reader.feed(chunk)
        assert 0 <= used <= len(chunk)
        consumed += used
        if reader.done and stop_at_done:
            break
        assert used == len(chunk) or reader.done
    try:
        return reader.result(), consumed
    except (LimitError, BareLineEndingError, NulByteError) as exc:
        return type(exc), consumed


def read_whole(
    impl: Impl, data: bytes, limit: int = BIG, *, normalize: bool = False, allow_nul: bool = False
) -> Outcome:
    return read(impl.reader_cls()(limit, normalize, allow_nul), [data])


# (input, message) for well-formed input: CRLF kept, dot-unstuffed, final dot line removed.
GOOD = [
    pytest.param(b"Subject: hi\r\n\r\nbody\r\n.\r\n", b"Subject: hi\r\n\r\nbody\r\n", id="basic"),
    pytest.param(b".\r\n", b"", id="empty-message"),
    pytest.param(b"abc\r\n.\r\n", b"abc\r\n", id="crlf-before-dot-kept"),
    pytest.param(b"..leading\r\n.\r\n", b".leading\r\n", id="stuffed-first-line"),
    pytest.param(b".x\r\n.\r\n", b"x\r\n", id="single-dot-dropped"),
    pytest.param(b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", id="dot-line-stuffed"),
    pytest.param(b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n", id="only-first-dot-dropped"),
    pytest.param(b"a.\r\nb. .c\r\n.\r\n", b"a.\r\nb. .c\r\n", id="dots-mid-line-kept"),
    pytest.param(b"\r\n.\r\n", b"\r\n", id="one-empty-line"),
    pytest.param(b"\r\n\r\n.\r\n", b"\r\n\r\n", id="two-empty-lines"),
    pytest.param(b"a\x01b\xff\x80\x7f\r\n.\r\n", b"a\x01b\xff\x80\x7f\r\n", id="ctl-and-8bit"),
    pytest.param(b"..\r\n.\r\n", b".\r\n", id="stuffed-dot-first"),
]


@pytest.mark.parametrize(("data", "message"), GOOD)
def test_good_messages(impl: Impl, data: bytes, message: bytes) -> None:
    for normalize in (False, True):
        result, consumed = read_whole(impl, data, normalize=normalize)
        assert result == message
        assert type(result) is bytes
        assert consumed == len(data)


@pytest.mark.parametrize(("data", "message"), GOOD)
def test_every_split_point(impl: Impl, data: bytes, message: bytes) -> None:
    # A chunk boundary may fall anywhere: between CR and LF, inside CRLF.CRLF, after a dot.
    tail = b"QUIT\r\n"
    stream = data + tail
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            reader = impl.reader_cls()(BIG)
            assert read(reader, [stream[:i], stream[i:j], stream[j:]]) == (message, len(data))


@pytest.mark.parametrize(("data", "message"), GOOD)
def test_byte_at_a_time(impl: Impl, data: bytes, message: bytes) -> None:
    stream = data + b"MAIL FROM:<a@b.c>\r\n"
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert read(impl.reader_cls()(BIG), chunks) == (message, len(data))


def test_pipelined_bytes_after_the_dot_are_not_consumed(impl: Impl) -> None:
    # RFC 2920: commands sent right after the final dot belong to the next transaction.
    reader = impl.reader_cls()(BIG)
    data = b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
    assert reader.feed(data) == data.index(b"MAIL")
    assert finished(reader)
    assert reader.feed(b"more\r\n") == 0
    assert reader.feed(b"") == 0
    assert reader.result() == b"Subject: x\r\n\r\nbody\r\n"


def test_consumed_counts_across_chunks(impl: Impl) -> None:
    reader = impl.reader_cls()(BIG)
    assert reader.feed(b"line\r") == 5
    assert not finished(reader)
    assert reader.feed(b"\n.") == 2
    assert not finished(reader)
    assert reader.feed(b"\r") == 1
    assert reader.feed(b"\nQUIT\r\n") == 1
    assert finished(reader)
    assert reader.result() == b"line\r\n"


def test_feed_empty_before_end(impl: Impl) -> None:
    reader = impl.reader_cls()(BIG)
    assert reader.feed(b"") == 0
    assert reader.feed(b"a\r\n") == 3
    assert reader.feed(b"") == 0
    assert reader.feed(b".\r\n") == 3
    assert reader.result() == b"a\r\n"


def test_result_before_end_is_an_error(impl: Impl) -> None:
    reader = impl.reader_cls()(BIG)
    reader.feed(b"no end yet\r\n.")
    assert not finished(reader)
    with pytest.raises(RuntimeError):
        reader.result()


def test_result_can_be_called_twice(impl: Impl) -> None:
    reader = impl.reader_cls()(BIG)
    for chunk in (b"a\r\n", b"b\r\n", b"..c\r\n", b".\r\n"):
        reader.feed(chunk)
    assert reader.result() == b"a\r\nb\r\n.c\r\n"
    assert reader.result() == b"a\r\nb\r\n.c\r\n"


def test_constructor_keywords_and_validation(impl: Impl) -> None:
    # A cdef class __init__ has no introspectable signature: pin it here (STYLE 2.4).
    cls = impl.reader_cls()
    reader = cls(limit=10, normalize=True)
    reader.feed(b"a\nb\r\n.\r\n")
    assert reader.result() == b"a\r\nb\r\n"
    assert cls(5).feed(b"x") == 1
    with pytest.raises(ValueError, match="limit"):
        cls(-1)
    with pytest.raises(TypeError):
        cls("10")  # type: ignore[arg-type]  # a wrong type on purpose


@pytest.mark.parametrize(
    "data", [bytearray(b"a\r\n.\r\n"), memoryview(b"a\r\n.\r\n"), "a\r\n.\r\n"]
)
def test_feed_needs_bytes(impl: Impl, data: object) -> None:
    reader = impl.reader_cls()(BIG)
    with pytest.raises(TypeError, match="bytes"):
        reader.feed(data)  # type: ignore[arg-type]  # a wrong type on purpose
    assert reader.size == 0
    assert not finished(reader)


# --- SMTP smuggling (aiosmtpd test_smtpsmuggling style, reference section 9 item 1) ---------

SMUGGLED = b"MAIL FROM:<evil@x.y>\r\nRCPT TO:<victim@x.y>\r\nDATA\r\nsmuggled\r\n"
FAKE_ENDS = [
    pytest.param(b"\n.\r\n", id="LF.CRLF"),
    pytest.param(b"\n.\n", id="LF.LF"),
    pytest.param(b"\r\n.\n", id="CRLF.LF"),
    pytest.param(b"\r.\r\n", id="CR.CRLF"),
    pytest.param(b"\r.\r", id="CR.CR"),
    pytest.param(b"\r\n.\r", id="CRLF.CR"),
    pytest.param(b"\n.\r", id="LF.CR"),
    pytest.param(b"\r\r\n.\r\r\n", id="CRCRLF.CRCRLF"),
]


@pytest.mark.parametrize("fake", FAKE_ENDS)
def test_bare_line_end_never_ends_data(impl: Impl, fake: bytes) -> None:
    data = b"Subject: x\r\n\r\nbody" + fake + SMUGGLED + b".\r\n"
    stream = data + b"QUIT\r\n"
    # Read on to the real CRLF.CRLF; the smuggled commands are message bytes, not commands.
    assert read_whole(impl, stream) == (BareLineEndingError, len(data))
    message, consumed = read_whole(impl, stream, normalize=True)
    assert consumed == len(data)
    assert isinstance(message, bytes)
    assert message.endswith(SMUGGLED)
    assert b"\n" not in message.replace(b"\r\n", b"")
    assert b"\r" not in message.replace(b"\r\n", b"")


@pytest.mark.parametrize("fake", FAKE_ENDS)
def test_bare_line_end_split_everywhere(impl: Impl, fake: bytes) -> None:
    data = b"x" + fake + b"MAIL FROM:<e@x.y>\r\n.\r\n"
    for i in range(len(data) + 1):
        reader = impl.reader_cls()(BIG)
        assert read(reader, [data[:i], data[i:] + b"NOOP\r\n"]) == (BareLineEndingError, len(data))


def test_bare_lf_dot_lf_alone_does_not_end(impl: Impl) -> None:
    # `\n.\n` as the very first bytes: the dot is not at a line start after a bare LF.
    reader = impl.reader_cls()(BIG)
    assert reader.feed(b"\n.\n") == 3
    assert not finished(reader)
    assert reader.feed(b"\r\n.\r\nQUIT\r\n") == 5
    with pytest.raises(BareLineEndingError):
        reader.result()


@pytest.mark.parametrize(
    ("data", "normalized"),
    [
        # Go quirk 4 (reference 3): the dot after a bare LF is neither an end nor stuffing.
        (b"body\n\n.\nmore\r\n.\r\n", b"body\r\n\r\n.\r\nmore\r\n"),
        # Go quirk 5: bare CRs, CR CR LF, and a dot after a bare CR.
        (b"A: b\rc\r\n\r\nx\r\r\ny\r.\r\nz\r\n.\r\n", b"A: b\r\nc\r\n\r\nx\r\n\r\ny\r\n.\r\nz\r\n"),
        (b"\n.\r\n.\r\n", b"\r\n.\r\n"),  # smuggling attempt at the start: kept as data
        # Stuffing only at a real line start: the first dot goes, ".." after the bare LF stays.
        (b".\n..\r\n.\r\n", b"\r\n..\r\n"),
        (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\r\nb\r\n"),  # ".\r" + other: dot dropped, CR bare
        (b"\r\r\r\n.\r\n", b"\r\n\r\n\r\n"),
        (b"\n\n\n\r\n.\r\n", b"\r\n\r\n\r\n\r\n"),
        (b"x\r", None),  # not finished: the trailing CR is still undecided
    ],
)
def test_bare_line_ends(impl: Impl, data: bytes, normalized: bytes | None) -> None:
    if normalized is None:
        reader = impl.reader_cls()(BIG, normalize=True)
        assert reader.feed(data) == len(data)
        assert not finished(reader)
        return
    assert read_whole(impl, data) == (BareLineEndingError, len(data))
    assert read_whole(impl, data, normalize=True) == (normalized, len(data))
    for i in range(len(data) + 1):
        reader = impl.reader_cls()(BIG, normalize=True)
        assert read(reader, [data[:i], data[i:]]) == (normalized, len(data))


# --- size and limit ------------------------------------------------------------------------


def test_size_counts_after_unstuffing(impl: Impl) -> None:
    reader = impl.reader_cls()(BIG)
    reader.feed(b"..a\r\n..\r\n.\r\n")
    assert reader.result() == b".a\r\n.\r\n"
    assert reader.size == len(b".a\r\n.\r\n")


def test_limit_is_on_the_unstuffed_message(impl: Impl) -> None:
    data = b"..abc\r\n" * 10 + b".\r\n"
    message = b".abc\r\n" * 10
    assert read_whole(impl, data, len(message)) == (message, len(data))
    assert read_whole(impl, data, len(message) - 1) == (LimitError, len(data))
    assert read_whole(impl, b".\r\n", 0) == (b"", 3)
    assert read_whole(impl, b"a\r\n.\r\n", 2) == (LimitError, 6)


def test_limit_reads_to_the_end(impl: Impl) -> None:
    reader = impl.reader_cls()(100)
    for _ in range(50):
        assert reader.feed(b"0123456789" * 10 + b"\r\n") == 102
    assert reader.size == 50 * 102 - 2  # the last CRLF waits: it may precede the final dot
    assert not finished(reader)
    assert reader.feed(b".\r\nQUIT\r\n") == 3
    assert finished(reader)
    with pytest.raises(LimitError, match="read limit reached"):
        reader.result()
    assert reader.size == 50 * 102


def test_normalize_counts_toward_the_limit(impl: Impl) -> None:
    # Each bare LF becomes two bytes of message.
    data = b"a\nb\n\r\n.\r\n"
    assert read_whole(impl, data, 8, normalize=True) == (b"a\r\nb\r\n\r\n", len(data))
    assert read_whole(impl, data, 7, normalize=True) == (LimitError, len(data))


def test_limit_wins_over_bare_line_end(impl: Impl) -> None:
    data = b"x\ny" * 100 + b"\r\n.\r\n"
    assert read_whole(impl, data, 10) == (LimitError, len(data))
    assert read_whole(impl, data, 10, normalize=True) == (LimitError, len(data))


def test_memory_stays_bounded_by_the_limit(impl: Impl) -> None:
    # 16 MiB offered, 1 MiB allowed: the reader keeps no more than about the limit.
    cls = impl.reader_cls()
    chunk = (b"x" * 1022 + b"\r\n") * 64
    tracemalloc.start()
    try:
        reader = cls(1 << 20)
        for _ in range(256):
            reader.feed(chunk)
        reader.feed(b".\r\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with pytest.raises(LimitError):
        reader.result()
    assert reader.size == 256 * len(chunk)
    assert peak < (1 << 20) + 4 * len(chunk)


def test_single_9_mib_line(impl: Impl) -> None:
    # The Go tests send a 9 MiB line: no line-length limit inside DATA (reference 3 item 8).
    line = b"A" * (9 << 20)
    data = b"Subject: big\r\n\r\n" + line + b"\r\n.\r\n"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    result, consumed = read(impl.reader_cls()(10 << 20), chunks)
    assert consumed == len(data)
    assert result == data[:-3]


def test_many_stuffed_lines_in_one_chunk(impl: Impl) -> None:
    body = b"".join(b".%d\r\n" % i for i in range(3000))
    message = b"".join(b"%d\r\n" % i for i in range(3000))
    data = body + b".\r\nQUIT\r\n"
    assert read_whole(impl, data) == (message, len(data) - 6)
    assert read(impl.reader_cls()(BIG), [data[:5001], data[5001:]]) == (message, len(data) - 6)
    assert read_whole(impl, data, len(message) - 1) == (LimitError, len(data) - 6)


def test_large_message_in_64k_chunks(impl: Impl) -> None:
    lines = [
        b"..dot line %d" % i if i % 100 == 0 else b"line %d of the body" % i for i in range(60000)
    ]
    data = b"\r\n".join(lines) + b"\r\n.\r\nQUIT\r\n"
    message = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines) + b"\r\n"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    reader = impl.reader_cls()(BIG)
    assert read(reader, chunks) == (message, len(data) - 6)
    assert reader.size == len(message)


# RFC 5322 2.3 / 3.5: no NUL in a message. A hop that drops NULs would read the first of these
# as the end of data and the rest as commands, so the message is refused whole.
NUL_CASES = [
    pytest.param(b"a\x00b\r\n.\r\n", id="mid-line"),
    pytest.param(b"\x00\r\n.\r\n", id="first-byte"),
    pytest.param(b"a\r\n\x00.\r\nMAIL FROM:<x@y.z>\r\n.\r\n", id="nul-dot-fake-end"),
    pytest.param(b"a\r\n.\x00\r\nRCPT TO:<x@y.z>\r\n.\r\n", id="dot-nul-fake-end"),
    pytest.param(b"a\r\n\x00\r\n.\r\n", id="nul-line"),
    pytest.param(b"a\r\n..\x00\r\n.\r\n", id="after-stuffed-dot"),
]


@pytest.mark.parametrize("data", NUL_CASES)
def test_nul_refuses_the_message_after_reading_to_the_real_end(impl: Impl, data: bytes) -> None:
    piped = data + b"QUIT\r\n"
    for normalize in (False, True):
        assert read_whole(impl, piped, normalize=normalize) == (NulByteError, len(data))
    for cut in range(len(piped) + 1):
        assert read(impl.reader_cls()(BIG), [piped[:cut], piped[cut:]]) == (
            NulByteError,
            len(data),
        ), cut
    assert read(impl.reader_cls()(BIG), [bytes([b]) for b in piped]) == (NulByteError, len(data))


@pytest.mark.parametrize("data", NUL_CASES)
def test_allow_nul_keeps_it(impl: Impl, data: bytes) -> None:
    result, consumed = read_whole(impl, data + b"QUIT\r\n", allow_nul=True)
    assert consumed == len(data)
    assert isinstance(result, bytes) and b"\x00" in result


def test_nul_after_the_end_belongs_to_the_next_command(impl: Impl) -> None:
    assert read_whole(impl, b"a\r\n.\r\n\x00QUIT\r\n") == (b"a\r\n", 6)


def test_nul_error_order_limit_then_bare_then_nul(impl: Impl) -> None:
    assert read_whole(impl, b"\x00" * 20 + b"\r\n.\r\n", 10) == (LimitError, 25)
    assert read_whole(impl, b"\x00\na\r\n.\r\n") == (BareLineEndingError, 8)
    assert read_whole(impl, b"\x00\na\r\n.\r\n", normalize=True) == (NulByteError, 8)
    reader = impl.reader_cls()(BIG)
    reader.feed(b"\x00\r\n.\r\n")
    with pytest.raises(NulByteError, match="NUL byte in message data"):
        reader.result()


def test_nul_message_keeps_no_memory(impl: Impl) -> None:
    # After a NUL nothing more is kept: 16 MiB in, far less than 1 MiB held at the peak.
    chunk = (b"x" * 1022 + b"\r\n") * 64
    tracemalloc.start()
    try:
        reader = impl.reader_cls()(BIG)
        reader.feed(b"\x00")
        for _ in range(256):
            reader.feed(chunk)
        reader.feed(b".\r\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with pytest.raises(NulByteError):
        reader.result()
    assert reader.size == 1 + 256 * len(chunk)
    assert peak < 4 * len(chunk)


def test_nul_scan_is_linear(impl: Impl) -> None:
    cls = impl.reader_cls()

    def run(chunks: list[bytes]) -> None:
        reader = cls(BIG)
        for chunk in chunks:
            reader.feed(chunk)

    def make(n: int) -> list[bytes]:
        return [b"a\x00\r\n.." * 1000] * n + [b"\r\n.\r\n"]

    assert_linear(make, run, n=400)


@pytest.mark.parametrize(("data", "message"), GOOD)
def test_drain_at_every_split_point(impl: Impl, data: bytes, message: bytes) -> None:
    # What drain() takes while the message arrives, then result(), is the message, whatever
    # the cut: a held CR, CRLF or CRLF "." is never drained before it is judged.
    stream = data + b"QUIT\r\n"
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            reader = impl.reader_cls()(BIG)
            taken: list[bytes] = []
            used = 0
            for chunk in (stream[:i], stream[i:j], stream[j:]):
                used += reader.feed(chunk)
                taken += reader.drain()
            assert b"".join(taken) + reader.result() == message
            assert used == len(data)


@pytest.mark.parametrize(
    ("data", "limit", "error"),
    [
        (b"a" * 100 + b"\r\n.\r\n", 60, LimitError),
        (b"abc\r\n" * 10 + b"x\ny\r\n" + b"abc\r\n" * 10 + b".\r\n", BIG, BareLineEndingError),
        (b"abc\r\n" * 10 + b"x\0y\r\n" + b"abc\r\n" * 10 + b".\r\n", BIG, NulByteError),
    ],
)
def test_drain_keeps_the_verdict(
    impl: Impl, data: bytes, limit: int, error: type[Exception]
) -> None:
    # Bytes drained before the fault do not make the message good: result() still refuses it.
    reader = impl.reader_cls()(limit)
    taken: list[bytes] = []
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7])
        taken += reader.drain()
    assert taken  # some was drained before the fault was seen
    assert reader.done
    assert reader.drain() == []
    with pytest.raises(error):
        reader.result()
