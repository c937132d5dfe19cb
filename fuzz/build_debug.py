"""Build the compiled twins for fuzzing: bounds checks on, AddressSanitizer and UBSan.

The ``.pyx`` files are compiled as they are (nothing is edited or copied) into
``fuzz/.work/debug-build/``, next to nothing the package imports; ``fuzz/_twins.py`` loads them
from there when ``SMTPX_FUZZ_DEBUG_BUILD`` names that folder.

Two facts decide how (checked with Cython 3.3 on a small module, see fuzz/README.md):

- ``compiler_directives={"boundscheck": True, "wraparound": True}`` is only the default:
  a ``@cython.boundscheck(False)`` decorator on a function wins over it, as does a
  ``# cython:`` header line. The directives below still turn the checks on everywhere the
  ``.pyx`` does not opt out.
- The hot loops index raw ``const char*`` pointers (``_reader._scan``, ``_headers``), and
  Cython never bounds-checks a C pointer, whatever the directive. What checks those reads and
  writes is AddressSanitizer (every out-of-bounds access on a heap block, e.g. the reader's
  ``realloc`` scratch buffer) and UBSan (overflow, misaligned or null access). Python's small
  object allocator hides overruns inside its arenas, so run with ``PYTHONMALLOC=malloc``.

Usage (from the repository root)::

    python -m fuzz.build_debug            # writes fuzz/.work/debug-build/

then see fuzz/README.md ("The sanitizer build") for the environment to run a target with it.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fuzz._harness import ROOT, WORK_DIR

__all__ = ["OUT_DIR", "SANITIZERS", "build"]

OUT_DIR = WORK_DIR / "debug-build"
SANITIZERS = "-fsanitize=address,undefined"
_CFLAGS = [SANITIZERS, "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined", "-O1", "-g"]
_DIRECTIVES = {
    "boundscheck": True,
    "wraparound": True,
    "initializedcheck": True,
    "overflowcheck": True,
    "cdivision_warnings": True,
}


def build(out_dir: Path = OUT_DIR) -> list[Path]:
    """Cythonize and compile every ``smtpx/_speedups/*.pyx`` into ``out_dir``.

    Returns:
        The built extension files.
    """
    # Build-time tools without types (setup.py is not type-checked either): looked up, not
    # imported, so mypy sees Any instead of missing stubs.
    cythonize = importlib.import_module("Cython.Build").cythonize
    setuptools = importlib.import_module("setuptools")
    Distribution, Extension = setuptools.Distribution, setuptools.Extension
    build_ext = importlib.import_module("setuptools.command.build_ext").build_ext

    sources = sorted((ROOT / "smtpx" / "_speedups").glob("*.pyx"))
    with tempfile.TemporaryDirectory(prefix="smtpx-debug-") as tmp:
        # The generated C goes to a scratch folder so the release .c next to the .pyx stays.
        extensions = cythonize(
            [
                Extension(
                    f"smtpx._speedups.{src.stem}",
                    [str(src.relative_to(ROOT))],
                    extra_compile_args=_CFLAGS,
                    extra_link_args=[SANITIZERS],
                )
                for src in sources
            ],
            compiler_directives=_DIRECTIVES,
            build_dir=tmp,
            force=True,
            quiet=True,
        )
        dist = Distribution({"name": "smtpx-debug", "ext_modules": extensions})
        cmd = build_ext(dist)
        cmd.build_lib = str(out_dir)
        cmd.build_temp = os.path.join(tmp, "obj")
        cmd.inplace = False
        cmd.ensure_finalized()
        cmd.run()
        built = [Path(p) for p in cmd.get_outputs()]
    return built


def _main() -> None:
    if OUT_DIR.exists():
        shutil.rmtree(OUT_DIR)
    cwd = os.getcwd()
    os.chdir(ROOT)  # setuptools wants relative source paths
    try:
        built = build()
    finally:
        os.chdir(cwd)
    for path in built:
        print(path)
    libasan = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        "\nrun a differential target with it:\n"
        f"  LD_PRELOAD={libasan} ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "
        f"PYTHONMALLOC=malloc SMTPX_FUZZ_SCALE=0 SMTPX_FUZZ_MEMCHECK=0 "
        f"SMTPX_FUZZ_DEBUG_BUILD={OUT_DIR} python -m fuzz.fuzz_reader_diff",
        file=sys.stderr,
    )


if __name__ == "__main__":
    _main()
