# Compiling _connection.py with Cython (pure-Python mode, issue 11): the .py file stays the one
# source of truth; this file only makes Connection a cdef class with typed fields, so that the
# per-read and per-command paths read and write C fields instead of looking up slots. setup.py
# builds _connection.py as smtpx.protocol._connection_c, and Cython finds the declarations by
# that module name (hence this file's name); smtpx/protocol/__init__.py picks the compiled core
# with the compiled twins. Every field stays public: tests and the session read them. A field
# added to Connection.__slots__ must be added here too (tests/protocol/test_core_differential.py).
cdef class Connection:
    cdef public object _config
    cdef public bytearray _buf
    cdef public Py_ssize_t _pos
    cdef public list _out
    cdef public bint _eof
    cdef public bint _discarding
    cdef public object _reader
    cdef public object _pending
    cdef public Py_ssize_t _unrecognized
    cdef public Py_ssize_t _errors
    cdef public Py_ssize_t _junk
    cdef public Py_ssize_t _internal_errors
    cdef public bint _sync
    cdef public bint _violation
    cdef public Py_ssize_t _chunk_left
    cdef public Py_ssize_t _chunk_size
    cdef public bint _chunk_last
    cdef public object _chunk_refusal
    cdef public bint _chunking
    cdef public object _decision
    cdef public object state
    cdef public bint tls_active
    cdef public object xclient
    cdef public str helo
    cdef public bint esmtp
    cdef public object mail_from
    cdef public list rcpt_to
    cdef public bint utf8
    cdef public str body_type
    cdef public object dsn_ret
    cdef public object dsn_envid
    cdef public list rcpt_dsn
    cdef public bint requiretls
    cdef public object authenticated
    cdef public object mail_auth
