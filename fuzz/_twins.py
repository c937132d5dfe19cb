"""The twin implementations the differential targets compare.

``pure`` (``smtpx._reader_py``/``smtpx._headers_py``, the spec) and ``cython`` (the built
``smtpx._speedups`` modules) always; plus ``debug``, the same ``.pyx`` built by
``fuzz/build_debug.py`` with AddressSanitizer and UndefinedBehaviorSanitizer, when
``SMTPX_FUZZ_DEBUG_BUILD`` names the folder that script wrote (see fuzz/README.md).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from smtpx._abc import DataReaderLike, HeaderBlockParser

__all__ = ["Twin", "twins"]


@dataclass(frozen=True)
class Twin:
    """One implementation of the DATA reader and the header parser."""

    name: str
    reader: type[DataReaderLike]
    parse_header_block: HeaderBlockParser


def _load_debug(folder: Path, module: str) -> ModuleType:
    """Load ``smtpx._speedups.<module>`` from ``folder`` without replacing the installed one."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    candidates = [folder / "smtpx" / "_speedups" / f"{module}{s}" for s in suffixes]
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise FileNotFoundError(f"no {module} extension under {folder}: run fuzz/build_debug.py")
    # The spec name must stay the real one: the init function is named after its last part.
    spec = importlib.util.spec_from_file_location(f"smtpx._speedups.{module}", path)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _twin(name: str, reader: ModuleType, headers: ModuleType) -> Twin:
    cls: type[DataReaderLike] = reader.DataReader
    func: HeaderBlockParser = headers.parse_header_block
    return Twin(name, cls, func)


def twins() -> list[Twin]:
    """The pure twin first (the reference), then every compiled build available."""
    out = [
        _twin(
            "python",
            importlib.import_module("smtpx._reader_py"),
            importlib.import_module("smtpx._headers_py"),
        ),
        _twin(
            "cython",
            importlib.import_module("smtpx._speedups._reader"),
            importlib.import_module("smtpx._speedups._headers"),
        ),
    ]
    debug = os.environ.get("SMTPX_FUZZ_DEBUG_BUILD")
    if debug:
        folder = Path(debug)
        out.append(_twin("debug", _load_debug(folder, "_reader"), _load_debug(folder, "_headers")))
    return out
