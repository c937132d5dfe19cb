"""Picks the twins once, at import: compiled (``smtpx._speedups``) when present, else pure.

``SMTPX_NO_EXTENSIONS`` (any non-empty value, ``=0`` included: write ``=1``) forces the pure
twins; so does any interpreter other than CPython. ``SMTPX_REQUIRE_EXTENSIONS=1`` turns a failed
import of the compiled twins into an error instead of a fallback. All twins load or none do.
``IMPLEMENTATION`` says which set actually loaded. This is the only runtime module that reads
environment variables (STYLE 2.1).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Literal

__all__ = [
    "IMPLEMENTATION",
    "NO_EXTENSIONS",
    "REQUIRE_EXTENSIONS",
    "DataReader",
    "parse_header_block",
]

NO_EXTENSIONS = bool(os.environ.get("SMTPX_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
REQUIRE_EXTENSIONS = bool(os.environ.get("SMTPX_REQUIRE_EXTENSIONS"))

IMPLEMENTATION: Literal["cython", "python"]
# TYPE_CHECKING takes the pure branch so that mypy reads the typed spec.
if TYPE_CHECKING or NO_EXTENSIONS:
    from ._headers_py import parse_header_block
    from ._reader_py import DataReader

    IMPLEMENTATION = "python"
else:
    try:
        from ._speedups._headers import parse_header_block
        from ._speedups._reader import DataReader
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        from ._headers_py import parse_header_block
        from ._reader_py import DataReader

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"
