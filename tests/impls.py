"""The two implementations every reader and parser test runs against (STYLE 2.6).

``PURE`` and ``COMPILED`` load their twins lazily, on first use inside a test: a compiled twin
that was not built makes its ``cython`` test items fail with the ImportError (loudly), while
``pytest --no-extensions`` deselects those items instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from smtpx._abc import DataReaderLike, HeaderBlockParser


@dataclass(frozen=True)
class Impl:
    """One set of twins: ``python`` (``smtpx._*_py``) or ``cython`` (``smtpx._speedups._*``)."""

    name: Literal["python", "cython"]
    reader_module: str
    headers_module: str

    def reader_cls(self) -> type[DataReaderLike]:
        """The ``DataReader`` class of this implementation."""
        cls: type[DataReaderLike] = importlib.import_module(self.reader_module).DataReader
        return cls

    @property
    def parse_header_block(self) -> HeaderBlockParser:
        """The ``parse_header_block`` function of this implementation."""
        func: HeaderBlockParser = importlib.import_module(self.headers_module).parse_header_block
        return func

    def __repr__(self) -> str:
        return self.name


PURE = Impl("python", "smtpx._reader_py", "smtpx._headers_py")
COMPILED = Impl("cython", "smtpx._speedups._reader", "smtpx._speedups._headers")
IMPLS = (PURE, COMPILED)
