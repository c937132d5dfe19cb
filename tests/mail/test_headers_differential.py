"""Both header-parser twins give identical output on the same random bytes (STYLE 2.7).

Marked ``compiled``: it needs the built twin, and ``--no-extensions`` deselects it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpx._headers_py import parse_header_block as pure_parse
from tests.impls import COMPILED

pytestmark = pytest.mark.compiled

# Pieces that hit every branch: line endings of each kind, folds, colons, names, bad name
# bytes, NUL, 8-bit, encoded words.
_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"\r\n\r\n",
        b"\n\n",
        b"\r\n ",
        b"\n\t",
        b" ",
        b"\t",
        b":",
        b": ",
        b"Subject",
        b"From: a@b",
        b"X-Y",
        b"Received: from x",
        b"=?UTF-8?B?SGVs?=",
        b"\x00",
        b"\xff",
        b"\xc3\xa9",
        b"\x7f",
        b"a",
        b"body text",
    ]
)
_MESSAGES = st.one_of(
    st.lists(_PIECES, max_size=40).map(b"".join),
    st.binary(max_size=200),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MESSAGES)
def test_twins_agree(data: bytes) -> None:
    compiled = COMPILED.parse_header_block
    assert compiled(data) == pure_parse(data)


def _first_empty_line_end(data: bytes) -> int:
    # A line-by-line reference for rule 1.
    k = 0
    while True:
        if data.startswith(b"\n", k):
            return k + 1
        if data.startswith(b"\r\n", k):
            return k + 2
        lf = data.find(b"\n", k)
        if lf < 0:
            return len(data)
        k = lf + 1


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=20).map(b"".join), st.binary(max_size=50))
def test_body_offset_is_first_empty_line(block: bytes, body: bytes) -> None:
    data = block + body
    for parse in (pure_parse, COMPILED.parse_header_block):
        fields, offset = parse(data)
        assert offset == _first_empty_line_end(data)
        for name, value in fields:
            assert name
            assert b":" not in name
            assert b"\n" not in value
            assert value == value.strip(b" \t\r")
