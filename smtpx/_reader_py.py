"""DATA reader, pure-Python twin (the spec); ``smtpx/_speedups/_reader.pyx`` is its compiled copy.

The reader turns the bytes a client sends after ``354`` into the message (RFC 5321 4.1.1.4):
it finds the end marker ``CRLF . CRLF``, drops the first dot of every line that starts with one
(RFC 5321 4.5.2), watches for bare CR and bare LF (the SMTP smuggling defence, RFC 5321 2.3.8)
and for NUL (RFC 5322 2.3: a hop that drops NULs could read CRLF NUL "." CRLF as the end), and
enforces the size limit, without ever holding more than ``limit`` bytes of message.

Speed comes from scanning each chunk with ``bytes.find``, ``count``, ``translate`` and
``replace``, which run at C speed; Python only loops over the rare line-start dots, at most
``_MAX_FOUND`` per chunk, never over bytes or lines.

Chunk model (the compiled twin follows it exactly, so ``size`` agrees after every ``feed``):
the stream is processed up to a *held* suffix, the longest tail of the bytes seen that is a
proper prefix of ``CRLF . CRLF`` (CR; CRLF; CRLF dot; CRLF dot CR). Held bytes cannot be judged
yet (a CR may be bare or half of a CRLF, a dot may be stuffing or the end), so they are kept
aside and judged together with the next chunk. The start of the data counts as a line start:
it is modelled as a virtual CRLF held before the first byte, never emitted.

BDAT mode (RFC 3030, ``bdat=True``): the same reader serves CHUNKING. The protocol core frames
the chunks by their declared sizes and feeds exactly their bytes; there is no end marker and no
dot-unstuffing, so the only held suffix is a trailing CR (half of a CRLF split between chunks,
or a bare CR), judged by the next chunk or by ``finish()`` after the LAST chunk. The line-ending,
NUL and size checks are those of DATA, so a BDAT message that smtpx stores or relays in a DATA
hop can hold no bare CR or LF (and no NUL) that a later hop might read as an end of data.
"""

from __future__ import annotations

import operator

from smtpx.errors import BareLineEndingError, LimitError, NulByteError

__all__ = ["DataReader"]

# RFC 5321 4.1.1.4: the data ends with a line holding a single dot, i.e. CRLF "." CRLF.
_END = b"\r\n.\r\n"
# RFC 5321 4.5.2: a line starting with "." had one dot added by the client; drop it.
_STUFFED = b"\r\n."
_CRLF = b"\r\n"
# The virtual line start before the first byte (see the module docstring).
_VIRTUAL = b"\r\n"
# Every byte value but CR and LF: bytes.translate(None, _NOT_CRLF) keeps only CRs and LFs.
_NOT_CRLF = bytes(b for b in range(256) if b not in b"\r\n")
# Line-start dots found one by one per chunk before the rest is left to bytes.replace().
_MAX_FOUND = 32
# Output pieces shorter than this are gathered in one buffer instead of kept as bytes objects of
# their own: a client sending one-byte BDAT chunks (or TCP segments) must not cost a ~40-byte
# object per message byte. The buffer is moved to the parts list once it reaches _TAIL_FLUSH.
_SMALL = 1024
_TAIL_FLUSH = 65536


def _held_length(buf: bytes) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of ``_END``."""
    if buf.endswith(b"\r\n.\r"):
        return 4
    if buf.endswith(b"\r\n."):
        return 3
    if buf.endswith(b"\r\n"):
        return 2
    if buf.endswith(b"\r"):
        return 1
    return 0


def _normalize(body: bytes) -> bytes:
    """Rewrite every bare CR and bare LF of ``body`` as CRLF, keeping real CRLFs.

    ``body`` never ends with a CR whose partner is still unseen (such a CR is held), so each
    CR and LF here can be judged from ``body`` alone.
    """
    return body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class DataReader:
    """Incremental DATA reader (RFC 5321 4.1.1.4, 4.5.2); see ``smtpx._abc.DataReaderLike``.

    One reader per message; it keeps no module-level state. When several problems occur,
    ``result()`` raises the first of ``LimitError``, ``BareLineEndingError``, ``NulByteError``.

    Args:
        limit: Largest message kept, in bytes after unstuffing; a longer one is read to its end
            and refused.
        normalize: Keep each bare CR or LF as CRLF instead of refusing the message.
        allow_nul: Keep NUL bytes instead of refusing the message (off: RFC 5322 2.3).
        bdat: BDAT mode (RFC 3030): every byte fed is message content, nothing is unstuffed,
            and the message ends when ``finish()`` is called after the LAST chunk.
    """

    __slots__ = (
        "_allow_nul",
        "_bad",
        "_bdat",
        "_done",
        "_held",
        "_limit",
        "_normalize",
        "_nul",
        "_over",
        "_parts",
        "_size",
        "_tail",
        "_virtual",
    )

    def __init__(
        self, limit: int, normalize: bool = False, allow_nul: bool = False, bdat: bool = False
    ) -> None:
        limit = operator.index(limit)
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._limit = limit
        self._normalize = bool(normalize)
        self._allow_nul = bool(allow_nul)
        self._nul = False  # a NUL was seen (matters only when not allowed)
        self._done = False
        self._over = False  # output grew past the limit: nothing more is kept
        self._bad = False  # a bare CR or LF was seen (matters only when not normalizing)
        self._size = 0
        self._bdat = bool(bdat)
        # The held b"\r\n" is the virtual start-of-data line end (DATA only: a BDAT message
        # has no dot-stuffing, so its first line needs no line start in front of it).
        self._held = b"" if self._bdat else _VIRTUAL
        self._virtual = not self._bdat
        self._parts: list[bytes] = []
        self._tail = bytearray()  # small pieces, gathered (see _SMALL)

    @property
    def done(self) -> bool:
        """True once the end-of-data marker has been consumed (BDAT: once ``finish()`` ran)."""
        return self._done

    @property
    def size(self) -> int:
        """Message bytes emitted so far, after unstuffing (counted past the limit too)."""
        return self._size

    def feed(self, data: bytes) -> int:
        """Consume message bytes; return how many of ``data`` belong to the message.

        Args:
            data: the next bytes from the client, cut anywhere.

        Returns:
            ``len(data)`` while the end marker is not complete; once it is, the count up to and
            including its final LF (what follows is the next pipelined command, RFC 2920).
            0 after ``done``.

        Raises:
            TypeError: ``data`` is not ``bytes``.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"feed() needs bytes, not {type(data).__name__}")
        if self._done or not data:
            return 0
        if self._bdat:
            return self._feed_bdat(data)
        held = self._held
        buf = held + data if held else data
        n = len(buf)
        find = buf.find
        # Every CRLF "." starts a line with a dot: the end marker when CRLF follows, else a
        # stuffed dot to drop. They are rare in real mail, so find() them one by one; a chunk
        # with very many hands the rest to replace() (no per-line Python loop on any input).
        dots: list[int] = []
        end = -1
        bulk = -1
        pos = find(_STUFFED)
        while pos >= 0:
            if buf.startswith(_CRLF, pos + 3):
                end = pos
                break
            if len(dots) == _MAX_FOUND:
                bulk = pos
                end = find(_END, pos)
                break
            dots.append(pos + 2)
            pos = find(_STUFFED, pos + 3)
        if end >= 0:
            # RFC 5321 4.1.1.4: the CRLF in front of the final dot belongs to the message.
            cut = end + 2
            consumed = end + 5 - len(held)
            self._done = True
            self._held = b""
        else:
            cut = n - _held_length(buf)
            consumed = len(data)
            self._held = buf[cut:]
        # Held bytes are a prefix of CRLF "." CRLF, so every NUL of the message lies in the
        # consumed part of ``data``; bytes after the end marker belong to the next command.
        if not self._allow_nul and not self._nul and data.find(b"\0", 0, consumed) >= 0:
            self._nul = True
        if cut:
            while dots and dots[-1] >= cut:
                dots.pop()  # a dot inside the held suffix is judged with the next chunk
            self._take(buf, cut, dots, bulk if 0 <= bulk < cut else -1)
        return consumed

    def _feed_bdat(self, data: bytes) -> int:
        """BDAT mode: all of ``data`` is content; only a trailing CR waits for the next byte."""
        held = self._held
        buf = held + data if held else data
        cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        self._held = buf[cut:]
        if not self._allow_nul and not self._nul and b"\0" in data:
            self._nul = True
        if cut:
            self._take(buf, cut, [], -1)
        return len(data)

    def finish(self) -> None:
        """BDAT mode: the LAST chunk was fed; judge a held CR (it is bare) and end the message.

        Raises:
            RuntimeError: the reader is not in BDAT mode (DATA ends at its end marker).
        """
        if not self._bdat:
            raise RuntimeError("finish() is for BDAT mode; DATA ends at CRLF . CRLF")
        if self._done:
            return
        held = self._held
        self._held = b""
        if held:
            self._take(held, len(held), [], -1)
        self._done = True

    def _take(self, buf: bytes, cut: int, dots: list[int], bulk: int) -> None:
        """Account for, and unless dropped keep, the judged bytes ``buf[:cut]``.

        ``dots`` are the indexes of stuffed dots (RFC 5321 4.5.2) before ``bulk``; from
        ``bulk`` on (when >= 0) the stuffed dots are still to be dropped.
        """
        # The virtual line start is at the front of ``buf`` when this is the first take.
        skip = 2 if self._virtual else 0
        self._virtual = False
        body = buf if cut == len(buf) else buf[:cut]
        # RFC 5321 2.3.8: CR and LF only as CRLF. Each CRLF pair gives two of the CR and LF
        # bytes; any byte beyond that is a bare one.
        bare = len(body.translate(None, _NOT_CRLF)) - 2 * body.count(_CRLF)
        if bare and not self._normalize:
            self._bad = True
        keep = not self._over and not self._bad and not self._nul
        tail = b""
        stuffed = len(dots)
        if bulk >= 0:
            if keep:
                tail = body[bulk:].replace(_STUFFED, _CRLF)
                stuffed += cut - bulk - len(tail)
            else:
                stuffed += body.count(_STUFFED, bulk)
        self._size += cut - skip - stuffed + (bare if self._normalize else 0)
        if self._size > self._limit:
            self._over = True
            keep = False
        if not keep:
            self._parts.clear()  # memory stays bounded by the limit
            self._tail.clear()
            return
        pieces: list[bytes] = []
        start = skip
        for dot in dots:
            pieces.append(body[start:dot])
            start = dot + 1
        if bulk >= 0:
            pieces.append(body[start:bulk])
            pieces.append(tail)
        else:
            pieces.append(body[start:] if start else body)
        out = b"".join(pieces)
        if bare:
            out = _normalize(out)
        if len(out) < _SMALL:
            gathered = self._tail
            gathered += out
            if len(gathered) >= _TAIL_FLUSH:
                self._parts.append(bytes(gathered))
                gathered.clear()
        else:
            self._flush_tail()
            self._parts.append(out)

    def _flush_tail(self) -> None:
        if self._tail:
            self._parts.append(bytes(self._tail))
            self._tail.clear()

    def drain(self) -> list[bytes]:
        """Take the message bytes judged so far, in order; the reader keeps none of them.

        For streaming a long message out (to a spool file) while it arrives. Only judged output
        is given (held bytes wait for the next chunk), so the pieces drained over the message,
        followed by ``result()``, are exactly the message ``result()`` alone would return.
        The verdict is not affected: ``result()`` still raises for a message that turns out
        too long or bad, after some of it was drained (the caller then drops what it took).
        Once the message is known bad nothing more is kept, so drain gives ``[]``.
        """
        self._flush_tail()
        parts = self._parts
        self._parts = []
        return parts

    def result(self) -> bytes:
        """Return the message: CRLF line endings kept, dot-unstuffed, without the final dot.

        Returns:
            The message bytes (``b""`` when the first line was the end marker), without the
            pieces ``drain()`` took already.

        Raises:
            RuntimeError: the end marker has not been fed yet.
            LimitError: the message was longer than ``limit``.
            BareLineEndingError: a bare CR or LF was seen and ``normalize`` is off.
            NulByteError: a NUL byte was seen and ``allow_nul`` is off.
        """
        if not self._done:
            raise RuntimeError("DATA is not finished")
        if self._over:
            raise LimitError()
        if self._bad and not self._normalize:
            raise BareLineEndingError()
        if self._nul:
            raise NulByteError()
        self._flush_tail()
        parts = self._parts
        if len(parts) != 1:
            joined = b"".join(parts)
            parts[:] = [joined] if joined else []
            return joined
        return parts[0]
