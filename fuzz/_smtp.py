"""A checking driver for the sans-IO core, shared by the protocol and XCLIENT targets.

It plays the part of ``smtpx._session`` without sockets: feeds chunks, takes events, answers
``Message`` events, completes STARTTLS, and checks every write and every event.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from smtpx import responses as R
from smtpx.protocol import (
    Connection,
    ConnectionClosed,
    Event,
    Greeted,
    Message,
    NeedData,
    ProtocolConfig,
    StartTLS,
    State,
    XClient,
)
from smtpx.protocol._commands import CommandSyntaxError, parse_domain_arg

from ._harness import check

__all__ = ["MAX_PIPELINED", "check_replies", "config_from_flags", "run_session", "safe_text"]

# smtpx.protocol._connection drops a client with more than this much unparsed input while a
# reply is owed (its _MAX_PIPELINED); State's invariant 3 bounds the rest by the line length.
MAX_PIPELINED = 1024 * 1024
# RFC 5321 4.2: Reply-code SP/"-" textstring CRLF; 4.5.3.1.5: a reply line is at most 512
# octets with its CRLF. The text is checked for stray CR/LF by the regex.
_REPLY_LINE = re.compile(rb"([2-5][0-5][0-9])([ -])([^\r\n]*)\r\n")
_MAX_REPLY_LINE = 512
# Characters that must never reach a Received header or a log line (issue 9 item 14): C0 and
# C1 controls (VT, FF, ESC, DEL, U+0085...), line and paragraph separators, lone surrogates,
# and the bidi controls (U+202E and its kin). Other format characters (ZWJ in emoji domains)
# and unassigned code points are left to IDNA, not judged here.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
_BIDI_CONTROLS = frozenset(
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def safe_text(text: str) -> bool:
    """True if ``text`` holds no control, separator, surrogate or bidi control character."""
    return not any(
        ch in _BIDI_CONTROLS or unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in text
    )


def check_replies(out: bytes) -> None:
    """Check one write: whole, well-formed replies (RFC 5321 4.2), each ended by a SP line."""
    pos = 0
    code: bytes | None = None
    while pos < len(out):
        m = _REPLY_LINE.match(out, pos)
        check(m is not None, f"malformed reply line at {pos}: {out[pos : pos + 80]!r}")
        assert m is not None
        check(m.end() - pos <= _MAX_REPLY_LINE, f"reply line over 512 octets: {m.group(0)!r}")
        check(code is None or m.group(1) == code, f"code changes inside a reply: {out!r}")
        code = None if m.group(2) == b" " else m.group(1)
        pos = m.end()
    check(code is None, f"write ends inside a multi-line reply: {out[-80:]!r}")


def config_from_flags(flags: int) -> tuple[ProtocolConfig, bool, bool | None]:
    """A config, ``tls_active`` and ``xclient`` from one flags byte (all combinations reachable)."""
    xclient_mode = (flags >> 3) & 3
    config = ProtocolConfig(
        hostname="mx.fuzz.test",
        max_size=(64, 1024, 10 * 1024 * 1024, 0)[flags & 3],
        max_recipients=(1 << ((flags >> 5) & 3)),
        tls_available=bool(flags & 4),
        require_tls=bool(flags & 0x80),
        normalize_line_endings=bool(flags & 0x40),
    )
    xclient = (None, False, True, True)[xclient_mode]
    return config, bool(flags & 0x20) and not (flags & 4), xclient


def _check_event(conn: Connection, event: Event) -> None:
    if isinstance(event, Greeted):
        # The name goes into the Received header and the logs (issue 9 item 14).
        check(safe_text(event.name), f"EHLO/HELO name with unsafe characters: {event.name!r}", 14)
    elif isinstance(event, Message):
        check(b"\x00" not in event.data, "NUL stored in DATA", 15)
        check(conn.state is State.AWAIT_REPLY, f"Message event in state {conn.state} (not a reply)")
    elif isinstance(event, XClient):
        _check_xclient(event)


def _check_xclient(event: XClient) -> None:
    for name, value in event.attrs.items():
        if value is None:
            continue
        check(safe_text(value), f"XCLIENT {name} with unsafe characters: {value!r}", 14)
        if name in ("ADDR", "DESTADDR"):
            check("%" not in value, f"XCLIENT {name} with an IPv6 zone id: {value!r}", 11)
        if name == "HELO":
            try:
                parse_domain_arg(value)
            except CommandSyntaxError:
                check(False, f"XCLIENT HELO skips the EHLO syntax check: {value!r}", 12)


def run_session(
    chunks: Iterable[bytes], config: ProtocolConfig, *, tls_active: bool, xclient: bool | None
) -> list[Event]:
    """Drive one connection over ``chunks`` then EOF, checking every write and event.

    Returns:
        The events, for targets that check more.
    """
    conn = Connection(config, tls_active=tls_active, xclient=xclient)
    conn.greeting()
    events: list[Event] = []
    limit_line = config.max_line_length + 2
    for chunk in [*chunks, b""]:
        conn.receive_data(chunk)
        check(
            conn.buffered <= MAX_PIPELINED + len(chunk),
            f"{conn.buffered} bytes buffered after a {len(chunk)}-byte chunk",
        )
        # Each chunk can hold at most one event per byte, plus the closing events.
        for _ in range(len(chunk) + 8):
            event = conn.next_event()
            if isinstance(event, NeedData):
                break
            events.append(event)
            _check_event(conn, event)
            if isinstance(event, Message):
                conn.send(R.SUCCESS_MESSAGE_ACCEPTED)
            elif isinstance(event, StartTLS):
                conn.tls_established()
            elif isinstance(event, ConnectionClosed):
                break
        else:
            check(False, f"next_event() never returned NEED_DATA in state {conn.state}")
        if conn.state is State.COMMAND:
            # Invariant 3: between commands only a partial line may stay buffered.
            check(
                conn.buffered <= limit_line,
                f"{conn.buffered} bytes buffered between commands (line cap {limit_line})",
            )
        check_replies(conn.data_to_send())
    return events
