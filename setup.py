"""Optional Cython extensions for smtpx; everything else is in pyproject.toml (STYLE 2.2).

Every ``smtpx/_speedups/*.pyx`` is compiled when Cython and a C compiler are available, and so
is the protocol core: ``smtpx/protocol/_connection.py`` with its ``.pxd``, as
``smtpx.protocol._connection_c`` (Cython's pure-Python mode: the ``.py`` is the only source).
Without them, or with ``SMTPX_NO_EXTENSIONS`` set to any non-empty value, the pure-Python package is
built and a banner on stderr says so. ``SMTPX_REQUIRE_EXTENSIONS=1`` makes any failure fatal
(CI uses it so a silent fallback cannot pass for a compiled build). ``SMTPX_CYTHON_TRACE=1``
adds line tracing for coverage of the ``.pyx`` files.

A wheel that ends up holding no compiled module is tagged ``py3-none-any``, and compiled modules
left in ``build/`` by an earlier build never leak into a later one: each build compiles afresh
or ships none. pip shows the banner only with ``-v``; the installed package warns at import.
"""

from __future__ import annotations

import os
import sys
from glob import glob
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

bdist_wheel: Any
try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1: fine for `setup.py build_ext --inplace`, no wheels
    bdist_wheel = None

NO_EXTENSIONS = bool(os.environ.get("SMTPX_NO_EXTENSIONS")) or sys.implementation.name != "cpython"
REQUIRE_EXTENSIONS = bool(os.environ.get("SMTPX_REQUIRE_EXTENSIONS"))
CYTHON_TRACE = bool(os.environ.get("SMTPX_CYTHON_TRACE"))
HERE = os.path.dirname(os.path.abspath(__file__))
CORE_MODULE = "smtpx.protocol._connection_c"
CORE_SOURCE = os.path.join("smtpx", "protocol", "_connection.py")
CORE_GENERATED = os.path.join("smtpx", "protocol", "_connection.c")


def _banner(reason: str) -> None:
    bar = "*" * 72
    print(
        f"{bar}\nsmtpx: {reason}: pure-Python build (slower DATA reader and header parser)\n{bar}",
        file=sys.stderr,
    )


def _extensions() -> list[Extension]:
    if NO_EXTENSIONS:
        if REQUIRE_EXTENSIONS:
            raise RuntimeError("SMTPX_NO_EXTENSIONS and SMTPX_REQUIRE_EXTENSIONS are both set")
        _banner(
            "SMTPX_NO_EXTENSIONS is set"
            if sys.implementation.name == "cpython"
            else f"{sys.implementation.name} is not CPython"
        )
        return []
    try:
        from Cython.Build import cythonize  # noqa: PLC0415 (a pure build must work without Cython)
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        _banner("Cython is missing")
        return []
    # Relative paths: setuptools wants them, and the sdist stays relocatable.
    sources = sorted(
        os.path.relpath(p, HERE) for p in glob(os.path.join(HERE, "smtpx", "_speedups", "*.pyx"))
    )
    macros = [("CYTHON_TRACE_NOGIL", "1")] if CYTHON_TRACE else []
    built: list[Extension] = cythonize(
        [
            Extension(os.path.splitext(src)[0].replace(os.sep, "."), [src], define_macros=macros)
            for src in sources
        ],
        compiler_directives={"linetrace": CYTHON_TRACE},
        quiet=True,
    )
    # The protocol core, compiled from its own .py (pure-Python mode, with the .pxd beside it)
    # under another name, so that the pure module stays importable: one source of truth.
    # Annotations are not C types here: the compiled core must accept what the pure one does.
    built += cythonize(
        [Extension(CORE_MODULE, [CORE_SOURCE], define_macros=macros)],
        compiler_directives={
            "linetrace": CYTHON_TRACE,
            "language_level": 3,
            "annotation_typing": False,
        },
        quiet=True,
    )
    for ext in built:
        # cythonize() drops `optional`; with it a missing compiler falls back to pure.
        ext.optional = not REQUIRE_EXTENSIONS
    return built


class _BuildExt(build_ext):
    """Report on stderr when an optional extension could not be built."""

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception:
            if not getattr(ext, "optional", False):
                raise
            _banner(f"building {ext.name} failed")
            raise


def _compiled_in(build_lib: str) -> list[str]:
    found = []
    for folder in (("smtpx", "_speedups"), ("smtpx", "protocol")):
        path = os.path.join(build_lib, *folder)
        found += glob(os.path.join(path, "*.so")) + glob(os.path.join(path, "*.pyd"))
    return found


class _Build(build):
    """Drop compiled twins an earlier build left in ``build/lib*``.

    Otherwise a build without a compiler (or with ``SMTPX_NO_EXTENSIONS``) would find them
    "up to date" and ship them, silently compiled.
    """

    def run(self) -> None:
        for stale in _compiled_in(self.build_lib):
            os.remove(stale)
        super().run()


def _pure_if_nothing_compiled(command: Any) -> None:
    """Before a wheel is made: no compiled module built means a ``py3-none-any`` wheel."""
    if command.skip_build:
        return
    command.run_command("build")
    build_lib = command.get_finalized_command("build").build_lib
    if command.distribution.ext_modules and not _compiled_in(build_lib):
        _banner("no compiled module was built; the wheel is pure (py3-none-any)")
        command.distribution.ext_modules = []
        command.root_is_pure = True


class _SDist(sdist):
    """Leave the generated C out of the sdist: it is rebuilt from the ``.pyx`` (STYLE 2.2).

    cythonize() swaps each ``.pyx`` source for its ``.c``, and setuptools ships extension
    sources in the sdist by default.
    """

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        generated = {os.path.splitext(p)[0] + ".c" for p in files if p.endswith(".pyx")}
        generated.add(CORE_GENERATED)
        super().make_release_tree(base_dir, [f for f in files if f not in generated])


commands: dict[str, Any] = {"build": _Build, "build_ext": _BuildExt, "sdist": _SDist}
if bdist_wheel is not None:

    class _BdistWheel(bdist_wheel):  # type: ignore[misc,valid-type]
        """Tag the wheel ``py3-none-any`` when no extension was built (pure fallback)."""

        def run(self) -> None:
            _pure_if_nothing_compiled(self)
            super().run()

    commands["bdist_wheel"] = _BdistWheel
setup(ext_modules=_extensions(), cmdclass=commands)
