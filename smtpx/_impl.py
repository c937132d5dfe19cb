"""Picks the twins once, at import: compiled (``smtpx._speedups``) when present, else pure.

``SMTPX_NO_EXTENSIONS`` (any non-empty value, ``=0`` included: write ``=1``) forces the pure
twins; so does any interpreter other than CPython. ``SMTPX_REQUIRE_EXTENSIONS=1`` turns a failed
import of the compiled twins into an error instead of a fallback. All twins load or none do.
``IMPLEMENTATION`` says which set actually loaded. This is the only runtime module that reads
environment variables (STYLE 2.1).

A fallback nobody asked for (no ``SMTPX_NO_EXTENSIONS``, yet the compiled twins do not import,
e.g. a wheel built without a C compiler) emits a ``RuntimeWarning`` once, at import: pip hides
the build's own banner unless run with ``-v``. Silence it with ``SMTPX_NO_EXTENSIONS=1`` (pure on
purpose) or ``warnings.filterwarnings("ignore", message="smtpx: pure-Python fallback")``.
"""

from __future__ import annotations

import os
import sys
import warnings
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
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise
        warnings.warn(
            f"smtpx: pure-Python fallback, the compiled twins did not import ({exc}); the DATA "
            "reader and the header parser are slower. Reinstall with a C compiler, or set "
            "SMTPX_NO_EXTENSIONS=1 to choose pure Python.",
            RuntimeWarning,
            stacklevel=2,
        )
        from ._headers_py import parse_header_block
        from ._reader_py import DataReader

        IMPLEMENTATION = "python"
    else:
        IMPLEMENTATION = "cython"
