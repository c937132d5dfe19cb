"""parse_header_block (both twins) and the Headers multimap."""

from __future__ import annotations

import pytest

from smtpx.address import Address
from smtpx.errors import MailParseError
from smtpx.headers import Headers
from tests.impls import Impl

Fields = list[tuple[bytes, bytes]]


@pytest.mark.parametrize(
    ("data", "fields", "offset"),
    [
        # Rule 1: the FIRST empty line splits, whatever the line endings.
        (b"A: 1\r\nB: 2\r\n\r\nbody", [(b"A", b"1"), (b"B", b"2")], 14),
        (b"A: 1\nB: 2\n\nbody", [(b"A", b"1"), (b"B", b"2")], 11),
        (b"A: 1\r\n\nbody", [(b"A", b"1")], 7),
        (b"A: 1\n\r\nbody", [(b"A", b"1")], 7),
        # Go preferred a later CRLFCRLF over an earlier LFLF; smtpx never looks past the first.
        (b"A: b\n\nbody\r\n\r\nx", [(b"A", b"b")], 6),
        (b"A: b\r\n\r\nX: y\n\nz", [(b"A", b"b")], 8),
        # An empty first line: no headers at all.
        (b"\r\nbody", [], 2),
        (b"\nbody", [], 1),
        (b"", [], 0),
        # Headers only (RFC 5322 3.5: the body is optional).
        (b"A: 1\r\nB: 2\r\n", [(b"A", b"1"), (b"B", b"2")], 12),
        (b"A: 1\r\nB: 2", [(b"A", b"1"), (b"B", b"2")], 10),
        # A bare CR is no line ending, so "\r\r\n" is not an empty line.
        (b"A: 1\r\r\nB: 2\r\n\r\n", [(b"A", b"1"), (b"B", b"2")], 15),
        (b"A: 1\n\r\r\nB: 2\r\n\r\n", [(b"A", b"1"), (b"B", b"2")], 16),
    ],
)
def test_split(impl: Impl, data: bytes, fields: Fields, offset: int) -> None:
    assert impl.parse_header_block(data) == (fields, offset)


@pytest.mark.parametrize(
    ("block", "fields"),
    [
        # Rule 3: RFC 5322 2.2.3 unfolding removes the line break only.
        (b"Subject: a\r\n  b\r\n\tc", [(b"Subject", b"a  b\tc")]),
        (b"Subject: a\n b", [(b"Subject", b"a b")]),
        (b"Subject:\r\n  folded", [(b"Subject", b"folded")]),
        # Rule 4: SP, HTAB and CR are stripped at both ends; inner bytes stay.
        (b"X:   a b  \t", [(b"X", b"a b")]),
        (b"X: a\rb", [(b"X", b"a\rb")]),
        (b"X: \x00\xff\xc3\xa9", [(b"X", b"\x00\xff\xc3\xa9")]),
        (b"X:", [(b"X", b"")]),
        (b"X:no-space", [(b"X", b"no-space")]),
        (b"X: a: b", [(b"X", b"a: b")]),
        # Rule 2: white space before the colon is dropped (RFC 5322 4.5.8).
        (b"Subject : x", [(b"Subject", b"x")]),
        (b"Subject\t: x", [(b"Subject", b"x")]),
        # Names keep their spelling; duplicates stay in order.
        (b"Received: 1\r\nrEcEiVeD: 2", [(b"Received", b"1"), (b"rEcEiVeD", b"2")]),
        # Rule 5: malformed lines and their continuations are dropped.
        (b"A: 1\r\nNoColonLine\r\n more\r\nB: 2", [(b"A", b"1"), (b"B", b"2")]),
        (b" Leading: ws\r\n more\r\nB: 2", [(b"B", b"2")]),
        (b"From sender@example.com Mon\r\nB: 2", [(b"B", b"2")]),
        (b": empty name\r\nB: 2", [(b"B", b"2")]),
        (b"Bad Name: x\r\nB: 2", [(b"B", b"2")]),
        (b"N\xc3\xa4me: x\r\nB: 2", [(b"B", b"2")]),
        (b"A\x00: x\r\nB: 2", [(b"B", b"2")]),
    ],
)
def test_fields(impl: Impl, block: bytes, fields: Fields) -> None:
    assert impl.parse_header_block(block + b"\r\n\r\nbody")[0] == fields
    # The same block with LF line endings gives the same fields.
    lf_block = block.replace(b"\r\n", b"\n")
    assert impl.parse_header_block(lf_block + b"\n\nbody")[0] == fields


def test_body_is_never_scanned_for_headers(impl: Impl) -> None:
    data = b"A: 1\r\n\r\nB: 2\r\nC: 3\r\n"
    assert impl.parse_header_block(data) == ([(b"A", b"1")], 8)


def test_returns_bytes_and_list(impl: Impl) -> None:
    fields, offset = impl.parse_header_block(b"A: 1\r\n b\r\n\r\n")
    assert type(fields) is list
    assert type(offset) is int
    for name, value in fields:
        assert type(name) is bytes
        assert type(value) is bytes


@pytest.mark.parametrize("bad", [bytearray(b"A: 1\r\n\r\n"), "A: 1\r\n\r\n", None])
def test_rejects_non_bytes(impl: Impl, bad: object) -> None:
    with pytest.raises(TypeError):
        impl.parse_header_block(bad)  # type: ignore[arg-type]  # the point of the test


def test_large_header_block(impl: Impl) -> None:
    block = b"".join(b"X-%d: %s\r\n" % (i, b"v" * (i % 50)) for i in range(20000))
    fields, offset = impl.parse_header_block(block + b"\r\n" + b"x" * 1000)
    assert len(fields) == 20000
    assert fields[-1] == (b"X-19999", b"v" * 49)
    assert offset == len(block) + 2


# --- Headers ---------------------------------------------------------------------------------


def _headers() -> Headers:
    return Headers(
        [
            ("Received", "from a"),
            ("Message-ID", "<1@x>"),
            ("received", "from b"),
            ("Subject", "hi"),
        ]
    )


def test_headers_lookup_ignores_case() -> None:
    h = _headers()
    assert h.get("message-id") == "<1@x>"
    assert h.get("MESSAGE-ID") == "<1@x>"
    assert h["subject"] == "hi"
    assert "SUBJECT" in h
    assert "Missing" not in h
    assert 42 not in h
    assert h.get("Missing") is None
    assert h.get("Missing", "dflt") == "dflt"
    with pytest.raises(KeyError):
        h["Missing"]


def test_headers_multimap_order_and_spelling() -> None:
    h = _headers()
    assert h.get("Received") == "from a"
    assert h.get_all("RECEIVED") == ["from a", "from b"]
    assert h.get_all("nope") == []
    assert len(h) == 4
    assert list(h) == ["Received", "Message-ID", "received", "Subject"]
    assert h.keys() == list(h)
    assert h.values() == ["from a", "<1@x>", "from b", "hi"]
    assert h.items()[2] == ("received", "from b")
    assert bool(h)
    assert not Headers()
    assert h == _headers()
    assert h != Headers()
    assert "Message-ID" in repr(h)


def test_headers_get_all_returns_a_copy() -> None:
    h = _headers()
    h.get_all("Received").append("mutated")
    assert h.get_all("Received") == ["from a", "from b"]


def test_headers_from() -> None:
    h = Headers([("From", '"Doe, John" <john@example.com>')])
    assert h.from_() == Address("john@example.com", "Doe, John")


@pytest.mark.parametrize(
    "items",
    [
        [],
        [("From", "a@b"), ("From", "c@d")],
        [("From", "a@b, c@d")],
        [("From", "group: a@b;")],
        [("From", "not an address")],
        [("From", "")],
    ],
)
def test_headers_from_errors(items: list[tuple[str, str]]) -> None:
    with pytest.raises(MailParseError):
        Headers(items).from_()


def test_headers_to_reads_every_to_field() -> None:
    h = Headers([("To", "a@b, Bee <b@c>"), ("Cc", "c@d"), ("to", "undisclosed:;"), ("TO", "e@f")])
    assert h.to() == [Address("a@b"), Address("b@c", "Bee"), Address("e@f")]
    assert h.addresses("cc") == [Address("c@d")]
    assert Headers().to() == []
