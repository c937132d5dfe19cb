"""Static API parity (STYLE 2.7); never run, only type-checked by ``mypy``.

mypy reads the pure twin's annotations and the compiled twin's ``.pyi``; both must satisfy
the protocols of ``smtpx._abc``, so a drift on either side fails the type check.
"""

from __future__ import annotations

from smtpx import _headers_py, _reader_py
from smtpx._abc import DataReaderLike, HeaderBlockParser
from smtpx._speedups import _headers, _reader

pure_reader: type[DataReaderLike] = _reader_py.DataReader
compiled_reader: type[DataReaderLike] = _reader.DataReader
pure_headers: HeaderBlockParser = _headers_py.parse_header_block
compiled_headers: HeaderBlockParser = _headers.parse_header_block
