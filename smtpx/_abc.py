"""Contracts that the pure and the compiled twins both satisfy.

Tests and ``tests/typing_parity.py`` type both twins against these protocols, so mypy fails
when a ``.pyi`` or a pure twin drifts from the other.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["DataReaderLike", "HeaderBlockParser"]


class DataReaderLike(Protocol):
    """Incremental DATA reader (RFC 5321 4.1.1.4 and 4.5.2), fed in arbitrary chunks.

    Only ``CRLF . CRLF`` ends the message (a ``.`` line as the very first line also does).
    The kept message is dot-unstuffed with its CRLF line endings intact, up to and including
    the CRLF before the final dot. A bare CR or bare LF anywhere marks the message bad: with
    ``normalize=False`` the reader reads on to the real end and ``result()`` raises
    ``BareLineEndingError``; with ``normalize=True`` each bare CR or LF is kept as CRLF.
    A message longer than ``limit`` (after unstuffing) is read to its end without being kept
    and ``result()`` raises ``LimitError``. A NUL byte anywhere in the message (RFC 5322 2.3)
    makes the reader read on to the real end and ``result()`` raise ``NulByteError``, unless
    ``allow_nul=True``. Several problems: ``LimitError``, then ``BareLineEndingError``, then
    ``NulByteError``.

    With ``bdat=True`` (RFC 3030 CHUNKING) every byte fed is content: no end marker, no
    dot-unstuffing; ``finish()`` ends the message after the LAST chunk, and the same line-ending,
    NUL and size rules apply.
    """

    def __init__(
        self, limit: int, normalize: bool = False, allow_nul: bool = False, bdat: bool = False
    ) -> None: ...

    def finish(self) -> None:
        """BDAT mode: end the message (a held trailing CR is bare); RuntimeError for DATA."""
        ...

    def feed(self, data: bytes) -> int:
        """Consume message bytes; return how many of ``data`` belong to the message.

        Fewer than ``len(data)`` only once the end marker was found: the rest is the next
        pipelined command (RFC 2920). Feeding after ``done`` consumes nothing.
        """
        ...

    @property
    def done(self) -> bool:
        """True once the end-of-data marker has been consumed."""
        ...

    @property
    def size(self) -> int:
        """Message bytes seen so far, after unstuffing (counted past the limit too)."""
        ...

    def drain(self) -> list[bytes]:
        """Take the judged message bytes so far; drained pieces plus ``result()`` = the message.

        The verdict of ``result()`` is unchanged; a bad or too long message drains ``[]``.
        """
        ...

    def result(self) -> bytes:
        """The message; raises ``LimitError``, ``BareLineEndingError`` or ``NulByteError``."""
        ...


class HeaderBlockParser(Protocol):
    """``parse_header_block(data) -> (fields, body_offset)``: see ``smtpx._headers_py``."""

    def __call__(self, data: bytes, /) -> tuple[list[tuple[bytes, bytes]], int]: ...
