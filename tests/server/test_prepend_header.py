"""Envelope.prepend_header refuses what would forge or break a trace header (issue 9 item 14)."""

from __future__ import annotations

import pytest

from smtpx import Envelope


@pytest.mark.parametrize(
    "value",
    [
        "from a\x0bb",  # VT
        "from a\x0cb",  # FF
        "from \x1b[2Ja",  # ESC (terminal escape in logs)
        "from a\x7fb",  # DEL
        "from a\x85b",  # U+0085 NEXT LINE, a line break to some readers
        "from a\u2028b",  # LINE SEPARATOR
        "from a\u2029b",  # PARAGRAPH SEPARATOR
        "from \u202etset.elpmaxe",  # RIGHT-TO-LEFT OVERRIDE
        "from a\u2066b",  # LEFT-TO-RIGHT ISOLATE
        "from a\x00b",  # NUL
        "from a\rb",  # bare CR
        "from a\nb",  # bare LF
        "from a\r\nX-Injected: 1",  # CRLF without WSP: header injection
        "from a\r\n \r\n by b",  # a fold that leaves a line of spaces only
        "from a\r\n\t\r\n by b",  # the same with TAB
        "from a\r\n ",  # a trailing fold with nothing after it
        "from a\r\n",  # a trailing CRLF
        "from a\ud800",  # lone surrogate
    ],
)
def test_prepend_header_refuses(value: str) -> None:
    env = Envelope(data=b"Subject: x\r\n\r\nbody\r\n")
    with pytest.raises(ValueError, match="Received"):
        env.prepend_header("Received", value)
    assert env.data == b"Subject: x\r\n\r\nbody\r\n"  # nothing was added


@pytest.mark.parametrize(
    "value",
    [
        "from a (b [192.0.2.1])\r\n\tby mx.test with ESMTP; Sat, 28 Nov 2026 10:00:00 +0000",
        "from a\r\n by b",
        "caf\u00e9 \u4e2d\u6587",  # non-ASCII text stays allowed (RFC 6532)
        "a\tb",
        "",
    ],
)
def test_prepend_header_accepts(value: str) -> None:
    env = Envelope(data=b"Subject: x\r\n\r\nbody\r\n")
    env.prepend_header("Received", value)
    assert env.data.startswith(b"Received:")
    assert env.data.endswith(b"\r\nSubject: x\r\n\r\nbody\r\n")
