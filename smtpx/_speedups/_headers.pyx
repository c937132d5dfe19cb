# cython: language_level=3, embedsignature=True, freethreading_compatible=True
"""Header block parser, compiled twin of ``smtpx/_headers_py.py`` (the spec: read its rules).

One pass over the header block, line by line with ``memchr``; the body is never scanned. The
output is byte for byte that of the pure twin (``tests/mail/test_headers_differential.py``).
No module state: the function only reads its immutable ``bytes`` argument.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memchr

__all__ = ["parse_header_block"]

cdef const unsigned char LF = 0x0A
cdef const unsigned char CR = 0x0D
cdef const unsigned char SP = 0x20
cdef const unsigned char HTAB = 0x09
cdef const unsigned char COLON = 0x3A


cdef inline bint _is_ws(unsigned char c) noexcept nogil:
    # The bytes stripped from both ends of a value (rule 4).
    return c == SP or c == HTAB or c == CR


cdef inline bint _is_name(unsigned char c) noexcept nogil:
    # RFC 5322 3.6.8 ftext: %d33-57 / %d59-126
    return 0x21 <= c <= 0x7E and c != COLON


cdef bytes _value(const unsigned char* buf, Py_ssize_t start, Py_ssize_t end, bint folded):
    """The value in ``buf[start:end]``: line breaks removed (rule 3), then stripped (rule 4)."""
    cdef Py_ssize_t i, k
    cdef unsigned char* tmp
    cdef bytes out
    if not folded:
        while start < end and _is_ws(buf[start]):
            start += 1
        while end > start and _is_ws(buf[end - 1]):
            end -= 1
        return PyBytes_FromStringAndSize(<const char*>buf + start, end - start)
    tmp = <unsigned char*>PyMem_Malloc(<size_t>(end - start))
    if tmp == NULL:
        raise MemoryError()
    try:
        k = 0
        for i in range(start, end):
            if buf[i] == LF:
                # RFC 5322 2.2.3: drop the CRLF (or LF) of the fold, keep the WSP after it.
                if k > 0 and tmp[k - 1] == CR:
                    k -= 1
                continue
            tmp[k] = buf[i]
            k += 1
        i = 0
        while i < k and _is_ws(tmp[i]):
            i += 1
        while k > i and _is_ws(tmp[k - 1]):
            k -= 1
        out = PyBytes_FromStringAndSize(<const char*>tmp + i, k - i)
    finally:
        PyMem_Free(tmp)
    return out


def parse_header_block(data):
    """Split a message into its header fields and the offset of its body.

    Args:
        data: The whole message (or at least its header block and the empty line after it).

    Returns:
        ``(fields, body_offset)``: the raw ``(name, value)`` pairs in order and the index of
        the body's first byte in ``data`` (see ``smtpx._headers_py`` for the exact rules).
    """
    if not isinstance(data, bytes):
        raise TypeError(f"parse_header_block() needs bytes, not {type(data).__name__}")
    cdef bytes raw = <bytes>data
    cdef const unsigned char* buf = <const unsigned char*>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(raw)
    cdef list fields = []
    cdef const unsigned char* hit
    cdef Py_ssize_t line = 0, line_end, nxt, i, j
    cdef Py_ssize_t name_start = 0, name_end = 0, vstart = 0, vend = 0
    cdef bint open_field = False, folded = False
    cdef unsigned char c

    # One pass, one line at a time; the body is never scanned.
    while line < n:
        hit = <const unsigned char*>memchr(buf + line, LF, <size_t>(n - line))
        if hit == NULL:
            line_end = n
            nxt = n
        else:
            line_end = hit - buf
            nxt = line_end + 1
            # Rule 1: an empty line ("" or "\r" before its LF) ends the header block.
            if line_end == line or (line_end == line + 1 and buf[line] == CR):
                if open_field:
                    fields.append((
                        PyBytes_FromStringAndSize(
                            <const char*>buf + name_start, name_end - name_start
                        ),
                        _value(buf, vstart, vend, folded),
                    ))
                return fields, nxt
        c = buf[line]
        if c == SP or c == HTAB:
            if open_field:  # rule 3: a continuation line
                vend = line_end
                folded = True
            line = nxt
            continue
        if open_field:
            fields.append((
                PyBytes_FromStringAndSize(<const char*>buf + name_start, name_end - name_start),
                _value(buf, vstart, vend, folded),
            ))
            open_field = False
        i = line
        while i < line_end and _is_name(buf[i]):
            i += 1
        if i > line:
            j = i
            while j < line_end and (buf[j] == SP or buf[j] == HTAB):
                j += 1
            if j < line_end and buf[j] == COLON:
                open_field = True
                folded = False
                name_start = line
                name_end = i
                vstart = j + 1
                vend = line_end
        # Otherwise rule 5: the line (and its continuations) is dropped.
        line = nxt
    if open_field:
        fields.append((
            PyBytes_FromStringAndSize(<const char*>buf + name_start, name_end - name_start),
            _value(buf, vstart, vend, folded),
        ))
    return fields, n
