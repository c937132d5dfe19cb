"""Differential test (STYLE 2.7): both reader twins, same random bytes, same random cuts.

Every test here is marked ``compiled`` (it needs both twins), so ``--no-extensions`` deselects
it. The messages mix what matters to the reader: dots at line starts, CRLF, bare CR and LF, the
end marker itself, NULs and 8-bit bytes. They are cut at random points, and after every
``feed`` the consumed count, ``done`` and ``size`` must agree, then the result or exception.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpx._abc import DataReaderLike
from smtpx.errors import BareLineEndingError, LimitError, NulByteError
from tests.impls import COMPILED, PURE

pytestmark = pytest.mark.compiled

PIECES = [
    b"\r\n",
    b"\r\n.",
    b".",
    b"..",
    b"\r",
    b"\n",
    b"\r\n.\r\n",
    b"\r\n..\r\n",
    b"a",
    b"Subject: =?utf-8?q?caf=C3=A9?=",
    b" ",
    b"\x00",
    b"\xff\xfe",
    b"\r\r\n",
    b"\n.\n",
]

messages = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=8)), max_size=60).map(
    b"".join
)


def trace(
    cls: type[DataReaderLike],
    data: bytes,
    cuts: list[int],
    limit: int,
    normalize: bool,
    allow_nul: bool = False,
) -> list[object]:
    reader = cls(limit, normalize, allow_nul)
    seen: list[object] = []
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        seen.append((reader.feed(data[pos:cut]), reader.done, reader.size))
        pos = cut
    try:
        result: object = reader.result()
        assert type(result) is bytes
    except (LimitError, BareLineEndingError, NulByteError, RuntimeError) as exc:
        result = (type(exc), str(exc))
    seen.append(result)
    return seen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=messages,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    limit=st.one_of(st.integers(min_value=0, max_value=64), st.just(1 << 20)),
    normalize=st.booleans(),
    allow_nul=st.booleans(),
)
def test_twins_agree(
    data: bytes, cuts: list[int], limit: int, normalize: bool, allow_nul: bool
) -> None:
    cuts = [min(c, len(data)) for c in cuts]
    assert trace(PURE.reader_cls(), data, cuts, limit, normalize, allow_nul) == trace(
        COMPILED.reader_cls(), data, cuts, limit, normalize, allow_nul
    )


NUL_PIECES = [b"\x00", b"\r\n", b"\r\n.", b".", b"\r", b"\n", b"a", b"\r\n.\r\n", b"\r\n\x00.\r\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.sampled_from(NUL_PIECES), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    normalize=st.booleans(),
    allow_nul=st.booleans(),
)
def test_twins_agree_on_nul(data: bytes, cuts: list[int], normalize: bool, allow_nul: bool) -> None:
    # NUL next to the end marker and to line starts, where a hop dropping NULs would cut.
    cuts = [min(c, len(data)) for c in cuts]
    pure = trace(PURE.reader_cls(), data, cuts, 1 << 20, normalize, allow_nul)
    assert pure == trace(COMPILED.reader_cls(), data, cuts, 1 << 20, normalize, allow_nul)
    steps: list[tuple[int, bool, int]] = pure[:-1]  # type: ignore[assignment]
    consumed = sum(step[0] for step in steps)
    done = steps[-1][1]
    bare = (BareLineEndingError, str(BareLineEndingError()))
    if done and b"\x00" in data[:consumed] and not allow_nul and pure[-1] != bare:
        assert pure[-1] == (NulByteError, str(NulByteError()))


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        max_size=200,
    ),
    chunk=st.integers(min_value=1, max_value=700),
    normalize=st.booleans(),
)
def test_twins_agree_on_well_formed_mail(lines: list[bytes], chunk: int, normalize: bool) -> None:
    # A client's view: stuff every line that starts with a dot, end with CRLF.CRLF.
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    data = b"".join(line + b"\r\n" for line in stuffed) + b".\r\nQUIT\r\n"
    cuts = list(range(chunk, len(data), chunk))
    expected = b"".join(line + b"\r\n" for line in lines)
    for impl in (PURE, COMPILED):
        seen = trace(impl.reader_cls(), data, cuts, 1 << 30, normalize, allow_nul=True)
        assert seen[-1] == expected
        assert sum(step[0] for step in seen[:-1]) == len(data) - len(b"QUIT\r\n")  # type: ignore[index]


def trace_bdat(
    cls: type[DataReaderLike],
    data: bytes,
    cuts: list[int],
    limit: int,
    normalize: bool,
    allow_nul: bool,
) -> list[object]:
    reader = cls(limit, normalize, allow_nul, bdat=True)
    seen: list[object] = []
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        seen.append((reader.feed(data[pos:cut]), reader.done, reader.size))
        pos = cut
    reader.finish()
    seen.append((reader.done, reader.size))
    try:
        result: object = reader.result()
        assert type(result) is bytes
    except (LimitError, BareLineEndingError, NulByteError) as exc:
        result = (type(exc), str(exc))
    seen.append(result)
    return seen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=messages,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    limit=st.one_of(st.integers(min_value=0, max_value=64), st.just(1 << 20)),
    normalize=st.booleans(),
    allow_nul=st.booleans(),
)
def test_twins_agree_in_bdat_mode(
    data: bytes, cuts: list[int], limit: int, normalize: bool, allow_nul: bool
) -> None:
    cuts = [min(c, len(data)) for c in cuts]
    assert trace_bdat(PURE.reader_cls(), data, cuts, limit, normalize, allow_nul) == trace_bdat(
        COMPILED.reader_cls(), data, cuts, limit, normalize, allow_nul
    )


def trace_drained(
    cls: type[DataReaderLike],
    data: bytes,
    cuts: list[int],
    limit: int,
    normalize: bool,
    allow_nul: bool,
    bdat: bool,
) -> tuple[list[object], bytes]:
    """As ``trace`` (or ``trace_bdat``), draining after every feed; also the drained bytes."""
    reader = cls(limit, normalize, allow_nul, bdat=bdat)
    seen: list[object] = []
    drained: list[bytes] = []
    pos = 0
    for cut in [*sorted(cuts), len(data)]:
        seen.append((reader.feed(data[pos:cut]), reader.done, reader.size))
        pieces = reader.drain()
        assert all(type(p) is bytes and p for p in pieces)
        drained += pieces
        pos = cut
    if bdat:
        reader.finish()
        seen.append((reader.done, reader.size))
    try:
        result: object = reader.result()
        assert type(result) is bytes
    except (LimitError, BareLineEndingError, NulByteError, RuntimeError) as exc:
        result = (type(exc), str(exc))
    seen.append(result)
    return seen, b"".join(drained)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=messages,
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    limit=st.one_of(st.integers(min_value=0, max_value=64), st.just(1 << 20)),
    normalize=st.booleans(),
    allow_nul=st.booleans(),
    bdat=st.booleans(),
)
def test_drained_pieces_and_result_are_the_message(
    data: bytes, cuts: list[int], limit: int, normalize: bool, allow_nul: bool, bdat: bool
) -> None:
    # Draining after every feed changes neither the steps nor the verdict, and drained bytes
    # followed by result() are what result() alone returns, on both twins alike.
    cuts = [min(c, len(data)) for c in cuts]
    plain = (trace_bdat if bdat else trace)(
        PURE.reader_cls(), data, cuts, limit, normalize, allow_nul
    )
    sides = [
        trace_drained(impl.reader_cls(), data, cuts, limit, normalize, allow_nul, bdat)
        for impl in (PURE, COMPILED)
    ]
    assert sides[0] == sides[1]
    seen, drained = sides[0]
    assert seen[:-1] == plain[:-1]
    if isinstance(plain[-1], bytes):
        assert seen[-1] == plain[-1][len(drained) :]
        assert drained + plain[-1][len(drained) :] == plain[-1]
        assert plain[-1].startswith(drained)
    else:
        assert seen[-1] == plain[-1]
