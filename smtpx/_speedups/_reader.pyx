# cython: language_level=3, embedsignature=True, freethreading_compatible=True
# Compiled twin of smtpx/_reader_py.py (the spec): same names, exceptions, results, `size` after
# every feed and bytes consumed. It follows the pure twin's chunk model: a held suffix (a proper
# prefix of CRLF "." CRLF) is judged with the next chunk, the start of data is a virtual held
# CRLF. Instead of bytes.find/count/replace it walks the chunk once with memchr for CR and LF.
"""DATA reader, compiled twin of ``smtpx._reader_py`` (RFC 5321 4.1.1.4, 4.5.2, 2.3.8)."""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcpy

from smtpx.errors import BareLineEndingError, LimitError, NulByteError

__all__ = ["DataReader"]

# The held suffix, i.e. how much of CRLF "." CRLF the last bytes seen already matched.
cdef enum Held:
    HELD_NONE = 0  # mid-line; the last byte is not a CR
    HELD_CR = 1  # "\r": bare, or the first half of a CRLF
    HELD_CRLF = 2  # "\r\n": a line start
    HELD_DOT = 3  # "\r\n.": stuffing (RFC 5321 4.5.2) or the end marker
    HELD_DOTCR = 4  # "\r\n.\r": the end marker when a LF follows

cdef const char* CRLF = b"\r\n"
# Output pieces shorter than this are gathered in one buffer (see the pure twin's _SMALL).
cdef Py_ssize_t SMALL = 1024
cdef Py_ssize_t TAIL_FLUSH = 65536


cdef inline Py_ssize_t find_byte(const char* s, Py_ssize_t i, Py_ssize_t n, int c) noexcept nogil:
    """Index of the first ``c`` in ``s[i:n]``, or ``n``."""
    cdef const void* p = memchr(s + i, c, <size_t>(n - i))
    if p == NULL:
        return n
    return <const char*>p - s


cdef class DataReader:
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

    cdef Py_ssize_t _limit
    cdef bint _normalize
    cdef bint _allow_nul
    cdef bint _nul
    cdef bint _done
    cdef bint _over
    cdef bint _bad
    cdef bint _virtual
    cdef bint _bdat
    cdef Held _held
    cdef Py_ssize_t _size
    cdef list _parts
    cdef bytearray _tail
    # Scratch output for one feed(), reused; bytes are copied out of it once per feed.
    cdef char* _out
    cdef Py_ssize_t _out_cap
    # Per-feed bookkeeping, written by _scan.
    cdef Py_ssize_t _out_len
    cdef Py_ssize_t _bare
    cdef bint _keep

    def __cinit__(self):
        self._out = NULL
        self._out_cap = 0

    def __init__(
        self, Py_ssize_t limit, bint normalize=False, bint allow_nul=False, bint bdat=False
    ):
        if limit < 0:
            raise ValueError("limit must be >= 0")
        self._limit = limit
        self._normalize = normalize
        self._allow_nul = allow_nul
        self._nul = False
        self._done = False
        self._over = False
        self._bad = False
        self._size = 0
        self._bdat = bdat
        # BDAT has no dot-stuffing: no virtual line start, only a trailing CR is ever held.
        self._held = HELD_NONE if bdat else HELD_CRLF
        self._virtual = not bdat
        self._parts = []
        self._tail = bytearray()

    def __dealloc__(self):
        free(self._out)

    @property
    def done(self):
        """True once the end-of-data marker has been consumed (BDAT: once ``finish()`` ran)."""
        return self._done

    @property
    def size(self):
        """Message bytes emitted so far, after unstuffing (counted past the limit too)."""
        return self._size

    cdef inline void _emit(self, const char* src, Py_ssize_t length) noexcept nogil:
        if self._keep and length > 0:
            memcpy(self._out + self._out_len, src, <size_t>length)
        self._out_len += length

    cdef inline void _emit_crlf(self) noexcept nogil:
        # The held CRLF in front of a line start; the virtual one is never emitted.
        if self._virtual:
            self._virtual = False
        else:
            self._emit(CRLF, 2)

    cdef inline void _emit_bare(self, const char* c) noexcept nogil:
        # RFC 5321 2.3.8: a CR or LF outside CRLF. Kept as CRLF when normalizing, else marks
        # the message bad (its bytes are counted but the message is dropped anyway).
        self._bare += 1
        if self._normalize:
            self._emit(CRLF, 2)
        else:
            self._emit(c, 1)

    # Every index below is compared against `n` before it is read (`i < n`, `q + 1 < n`, ...),
    # and no index is negative, so Cython's bounds and wraparound checks would only cost time.
    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef Py_ssize_t _scan(self, const char* s, Py_ssize_t n) noexcept nogil:
        """Process ``s[:n]``; return the bytes consumed (``n`` unless the end was found)."""
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t start, q, j
        cdef Py_ssize_t cr = -1
        cdef Py_ssize_t lf = -1
        cdef char c
        # 1. Judge the held suffix against the first bytes of this chunk.
        while self._held != HELD_NONE and i < n:
            c = s[i]
            if self._held == HELD_CR:
                if c == b"\n":
                    self._held = HELD_CRLF
                    i += 1
                else:
                    self._held = HELD_NONE
                    self._emit_bare(b"\r")
            elif self._held == HELD_CRLF:
                if c == b".":
                    self._held = HELD_DOT
                    i += 1
                else:
                    self._held = HELD_NONE
                    self._emit_crlf()
            elif self._held == HELD_DOT:
                if c == b"\r":
                    self._held = HELD_DOTCR
                    i += 1
                else:
                    # RFC 5321 4.5.2: the line's first dot is dropped.
                    self._held = HELD_NONE
                    self._emit_crlf()
            else:  # HELD_DOTCR
                self._emit_crlf()
                if c == b"\n":
                    self._held = HELD_NONE
                    self._done = True
                    return i + 1
                # The dot is dropped; the CR is judged again on its own.
                self._held = HELD_CR
        if i == n:
            return n
        # 2. Mid-line: jump from CR to LF with memchr, copying runs between the few places
        # where output differs from input (stuffed dots, normalized bare line ends).
        start = i
        while True:
            if cr < i:
                cr = find_byte(s, i, n, b"\r")
            if lf < i:
                lf = find_byte(s, i, n, b"\n")
            if lf < cr:
                # A LF with no CR in front of it (s[lf - 1] is not a CR: either no CR lies in
                # s[i:lf], or lf == i and the byte before was judged as not a CR).
                if self._normalize:
                    self._emit(s + start, lf - start)
                    start = lf + 1
                    self._emit_bare(b"\n")
                else:
                    self._bare += 1
                i = lf + 1
                continue
            if cr == n:
                break
            q = cr
            if q + 1 == n:
                self._emit(s + start, q - start)
                self._held = HELD_CR
                return n
            if s[q + 1] != b"\n":
                if self._normalize:
                    self._emit(s + start, q - start)
                    start = q + 1
                    self._emit_bare(b"\r")
                else:
                    self._bare += 1
                i = q + 1
                continue
            # A CRLF at q: s[j] starts a line.
            j = q + 2
            if j == n:
                self._emit(s + start, q - start)
                self._held = HELD_CRLF
                return n
            i = j
            if s[j] != b".":
                continue
            if j + 1 == n:
                self._emit(s + start, q - start)
                self._held = HELD_DOT
                return n
            if s[j + 1] == b"\r":
                if j + 2 == n:
                    self._emit(s + start, q - start)
                    self._held = HELD_DOTCR
                    return n
                if s[j + 2] == b"\n":
                    # RFC 5321 4.1.1.4: CRLF "." CRLF; the first CRLF is part of the message.
                    self._emit(s + start, j - start)
                    self._done = True
                    return j + 3
            # RFC 5321 4.5.2: drop the line's first dot (a CR after it is judged next round).
            self._emit(s + start, j - start)
            start = j + 1
            i = j + 1
        self._emit(s + start, n - start)
        return n

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cdef void _scan_bdat(self, const char* s, Py_ssize_t n) noexcept nogil:
        """BDAT mode: process all of ``s[:n]``; a trailing CR is held for the next chunk."""
        cdef Py_ssize_t i = 0
        cdef Py_ssize_t start, q
        cdef Py_ssize_t cr = -1
        cdef Py_ssize_t lf = -1
        if self._held == HELD_CR:
            self._held = HELD_NONE
            if s[0] == b"\n":
                self._emit(CRLF, 2)
                i = 1
            else:
                self._emit_bare(b"\r")
        start = i
        while True:
            if cr < i:
                cr = find_byte(s, i, n, b"\r")
            if lf < i:
                lf = find_byte(s, i, n, b"\n")
            if lf < cr:
                # A LF with no CR in front of it (as in _scan).
                if self._normalize:
                    self._emit(s + start, lf - start)
                    start = lf + 1
                    self._emit_bare(b"\n")
                else:
                    self._bare += 1
                i = lf + 1
                continue
            if cr == n:
                break
            q = cr
            if q + 1 == n:
                self._emit(s + start, q - start)
                self._held = HELD_CR
                return
            if s[q + 1] != b"\n":
                if self._normalize:
                    self._emit(s + start, q - start)
                    start = q + 1
                    self._emit_bare(b"\r")
                else:
                    self._bare += 1
                i = q + 1
                continue
            i = q + 2
        self._emit(s + start, n - start)

    cdef int _prepare(self, Py_ssize_t n) except -1:
        """Size the scratch output for ``n`` input bytes and reset the per-feed counters."""
        cdef Py_ssize_t need
        cdef char* grown
        # Output is at most the held bytes plus the chunk, twice that when every byte is a
        # bare line end being normalized.
        need = n + 4
        if self._normalize:
            need *= 2
        self._keep = not self._over and not self._bad and not self._nul
        if self._keep and need > self._out_cap:
            grown = <char*>realloc(self._out, <size_t>need)
            if grown == NULL:
                raise MemoryError()
            self._out = grown
            self._out_cap = need
        self._out_len = 0
        self._bare = 0
        return 0

    cdef int _commit(self) except -1:
        """Account for the output of one step: flags, size, and the kept bytes."""
        if self._bare and not self._normalize:
            self._bad = True
        self._size += self._out_len
        if self._size > self._limit:
            self._over = True
        if self._over or self._bad or self._nul:
            self._parts.clear()  # memory stays bounded by the limit
            del self._tail[:]
        elif self._out_len >= SMALL:
            self._flush_tail()
            self._parts.append(PyBytes_FromStringAndSize(self._out, self._out_len))
        elif self._out_len:
            self._tail += PyBytes_FromStringAndSize(self._out, self._out_len)
            if len(self._tail) >= TAIL_FLUSH:
                self._flush_tail()
        if self._done:
            free(self._out)
            self._out = NULL
            self._out_cap = 0
        return 0

    cdef int _flush_tail(self) except -1:
        if len(self._tail):
            self._parts.append(bytes(self._tail))
            del self._tail[:]
        return 0

    def finish(self):
        """BDAT mode: the LAST chunk was fed; judge a held CR (it is bare) and end the message.

        Raises:
            RuntimeError: the reader is not in BDAT mode (DATA ends at its end marker).
        """
        if not self._bdat:
            raise RuntimeError("finish() is for BDAT mode; DATA ends at CRLF . CRLF")
        if self._done:
            return
        self._prepare(1)
        if self._held == HELD_CR:
            self._held = HELD_NONE
            self._emit_bare(b"\r")
        self._done = True
        self._commit()

    def feed(self, data):
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
        cdef Py_ssize_t n, consumed
        cdef const char* s
        if not isinstance(data, bytes):
            raise TypeError(f"feed() needs bytes, not {type(data).__name__}")
        n = PyBytes_GET_SIZE(data)
        if self._done or n == 0:
            return 0
        self._prepare(n)
        s = PyBytes_AS_STRING(data)
        if self._bdat:
            self._scan_bdat(s, n)
            consumed = n
        else:
            consumed = self._scan(s, n)
        # Held bytes are a prefix of CRLF "." CRLF, so every NUL of the message lies in the
        # consumed part of ``data``; bytes after the end marker belong to the next command.
        if (
            not self._allow_nul
            and not self._nul
            and consumed > 0
            and memchr(s, 0, <size_t>consumed) != NULL
        ):
            self._nul = True
        self._commit()
        return consumed

    def drain(self):
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

    def result(self):
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
        if self._bad:
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
