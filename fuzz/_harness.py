"""What every fuzz target shares: budgets, known findings, the atheris entry point, replay.

A target module defines ``test_one_input(data: bytes) -> None`` (raise on a bug, return on
anything acceptable) and a module-level ``TARGET = Target(...)``. Running the module
(``python -m fuzz.fuzz_protocol``) calls :func:`main`, which instruments the loaded smtpx code,
adds the target's default libFuzzer flags and starts atheris. Tests call
:func:`Target.run_one` directly, with the same budgets.

Budgets. A target must stay linear in its input, so each input gets a time budget of
``base + per_byte * len(data)`` and a memory budget (the peak of Python allocations, via
``tracemalloc``) of ``base + per_byte * len(data)``. A run over the time budget is repeated
once before it counts (the machine is shared, one slow run may be a scheduling hiccup); a
second run over it raises :class:`BudgetExceeded`, which atheris reports as a crash. Times
are the thread's CPU time, so a descheduled process does not count against its input.

A fixed budget only catches a quadratic cost once inputs are large, and libFuzzer keeps them
small. So one input in ``scale_every`` (chosen by a hash, so a crasher replays) also gets a
doubling check, as ``tests/scaling.py`` does: a short span of the input is repeated to about
``scale_bytes`` bytes and to twice that; if the larger run takes more than 3 times the smaller
one (best of several, over 20 ms), the input is reported as super-linear. The
libFuzzer flags ``-timeout`` (seconds per input) and ``-rss_limit_mb`` stay as the hard stops
for what the in-process budget cannot see (an input that never returns, native memory).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
import tracemalloc
import types
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
CORPUS_DIR = FUZZ_DIR / "corpus"
CRASHERS_DIR = FUZZ_DIR / "crashers"
WORK_DIR = FUZZ_DIR / ".work"
DICT_FILE = FUZZ_DIR / "smtp.dict"

__all__ = [
    "CORPUS_DIR",
    "CRASHERS_DIR",
    "DICT_FILE",
    "ROOT",
    "WORK_DIR",
    "Budget",
    "BudgetExceeded",
    "Finding",
    "Target",
    "check",
    "known_items",
    "main",
    "split_chunks",
]


class Finding(AssertionError):
    """An invariant of smtpx does not hold for this input.

    Args:
        message: What went wrong, with the offending values.
        item: The issue-9 item this finding belongs to, when it is a known one; listing the
            number in ``SMTPX_FUZZ_KNOWN`` lets a run go on past it.
    """

    def __init__(self, message: str, item: int | None = None) -> None:
        super().__init__(message if item is None else f"[issue 9 item {item}] {message}")
        self.item = item


class BudgetExceeded(Finding):
    """One input cost more time or memory than its linear budget allows."""


def check(condition: bool, message: str, item: int | None = None) -> None:
    """Raise :class:`Finding` unless ``condition`` holds."""
    if not condition:
        raise Finding(message, item)


def known_items() -> frozenset[int]:
    """Issue-9 items whose findings are skipped: ``SMTPX_FUZZ_KNOWN=5,15`` (fuzzing only)."""
    raw = os.environ.get("SMTPX_FUZZ_KNOWN", "")
    return frozenset(int(x) for x in raw.replace(" ", "").split(",") if x.isdigit())


@dataclass(frozen=True)
class Budget:
    """Per-input limits: ``base + per_byte * len(data)`` for time and for peak memory.

    Attributes:
        base_s: Fixed time allowance per input, in seconds.
        per_byte_s: Time allowance per input byte, in seconds.
        base_bytes: Fixed allowance of peak Python memory per input.
        per_byte_bytes: Allowance of peak Python memory per input byte (the amplification a
            linear parser may need: decoded copies, lists of fields, the MIME tree).
    """

    base_s: float = 0.25
    per_byte_s: float = 40e-6
    base_bytes: int = 16 * 1024 * 1024
    per_byte_bytes: int = 256

    def time_limit(self, size: int) -> float:
        """Seconds allowed for an input of ``size`` bytes (scaled by ``SMTPX_FUZZ_SLACK``)."""
        slack = float(os.environ.get("SMTPX_FUZZ_SLACK", "1") or "1")
        return (self.base_s + self.per_byte_s * size) * slack

    def memory_limit(self, size: int) -> int:
        """Peak bytes of Python allocations allowed for an input of ``size`` bytes."""
        return self.base_bytes + self.per_byte_bytes * size


@dataclass(frozen=True)
class Target:
    """One fuzz target: its entry function, budget and default libFuzzer flags.

    Attributes:
        name: Short name; also the folder under ``fuzz/corpus``, ``fuzz/crashers``.
        test_one_input: Raises on a bug, returns on anything acceptable.
        budget: The per-input time and memory budget.
        max_len: Default ``-max_len`` (bytes per input).
        flags: More default libFuzzer flags.
        classify: Maps an unexpected exception to its issue-9 item, if it is a known one.
        trailer: Bytes at the end of an input that are control values, not data (the doubling
            check leaves them alone).
        scale_every: One input in this many gets the doubling check (0: never).
        scale_bytes: Size the repeated span is grown to for the doubling check.
        scale_floor_s: The doubling check ignores runs faster than this (timer noise).
    """

    name: str
    test_one_input: Callable[[bytes], None]
    budget: Budget = field(default_factory=Budget)
    max_len: int = 4096
    flags: Sequence[str] = ()
    classify: Callable[[BaseException], int | None] = lambda exc: None
    trailer: int = 0
    scale_every: int = 128
    scale_bytes: int = 8192
    scale_floor_s: float = 0.02

    def run_one(
        self,
        data: bytes,
        *,
        memcheck: bool = True,
        skip_known: bool = False,
        known: frozenset[int] | None = None,
        scale: bool = False,
    ) -> None:
        """Run ``test_one_input`` once under the budgets.

        Args:
            data: The input.
            memcheck: Measure peak Python memory (tracemalloc must be tracing, else skipped).
            skip_known: Swallow findings of the known items.
            known: The known items; default: those in ``SMTPX_FUZZ_KNOWN``.
            scale: Run the doubling check on the inputs picked by ``scale_every``.
        """
        try:
            self._budgeted(data, memcheck=memcheck)
            if scale:
                self.check_scaling(data)
        except Exception as exc:
            if not skip_known:
                raise
            item = exc.item if isinstance(exc, Finding) else self.classify(exc)
            if item is None or item not in (known_items() if known is None else known):
                raise

    def _budgeted(self, data: bytes, *, memcheck: bool) -> None:
        tracing = memcheck and tracemalloc.is_tracing()
        before = 0
        if tracing:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
        limit = self.budget.time_limit(len(data))
        elapsed = _timed(self.test_one_input, data)
        if tracing:
            peak = tracemalloc.get_traced_memory()[1] - before
            mem_limit = self.budget.memory_limit(len(data))
            if peak > mem_limit:
                raise BudgetExceeded(
                    f"{self.name}: {len(data)} input bytes peaked at {peak} bytes of Python "
                    f"memory, over the budget of {mem_limit}"
                )
        if elapsed > limit:
            again = _timed(self.test_one_input, data)  # one retry: the machine is shared
            if again > limit:
                raise BudgetExceeded(
                    f"{self.name}: {len(data)} input bytes took {elapsed:.3f} s and "
                    f"{again:.3f} s, over the budget of {limit:.3f} s"
                )

    def check_scaling(self, data: bytes, *, force: bool = False) -> None:
        """The doubling check on ``data`` (when picked by its hash, or always with ``force``).

        Raises:
            BudgetExceeded: Twice the repeated span costs more than 3 times the time.
        """
        end = len(data) - self.trailer
        digest = zlib.crc32(data)
        if end < 1 or not (force or (self.scale_every and digest % self.scale_every == 0)):
            return
        start = (digest >> 6) % end
        stop = start + 1 + (digest >> 20) % min(16, end - start)
        span = data[start:stop]
        times = max(1, self.scale_bytes // len(span))

        def grown(factor: int) -> bytes:
            return data[:start] + span * (times * factor) + data[stop:]

        small, large = grown(1), grown(2)
        try:
            t_small, t_large = _best_pair(self.test_one_input, small, large, 3)
            if t_large > 2.5 * t_small and t_large > self.scale_floor_s:
                # A suspect: confirm with more runs; the best of each is the cleanest reading.
                t_small, t_large = _best_pair(self.test_one_input, small, large, 5)
            if t_large > 3.0 * t_small and t_large > self.scale_floor_s:
                # Confirm over two more doublings. A super-linear cost keeps its ratio (about
                # 4 for a quadratic) at every step. A step in the cost does not: growing the
                # span past a length the input declares (a PROXY v2 length field) starts a
                # parse that did not run before, a jump once, not a trend. Both were seen.
                for factor in (2, 4):
                    small, large = grown(factor), grown(factor * 2)
                    t_small, t_large = _best_pair(self.test_one_input, small, large, 4)
                    if t_large <= 3.0 * t_small:
                        return
        except Exception:
            return  # the grown inputs are not this input; only their cost is judged here
        if t_large > 3.0 * t_small and t_large > self.scale_floor_s:
            raise BudgetExceeded(
                f"{self.name}: super-linear: {span!r} at offset {start} repeated to "
                f"{len(small)} bytes takes {t_small:.3f} s, to {len(large)} bytes "
                f"{t_large:.3f} s (ratio {t_large / t_small:.1f}, linear is about 2)"
            )


def _best_pair(
    func: Callable[[bytes], None], small: bytes, large: bytes, runs: int
) -> tuple[float, float]:
    """Best time of ``func`` on each input, interleaved, with the collector off."""
    best_small = best_large = float("inf")
    was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            best_small = min(best_small, _timed(func, small))
            best_large = min(best_large, _timed(func, large))
    finally:
        if was_on:
            gc.enable()
    return max(best_small, 1e-9), best_large


def _timed(func: Callable[[bytes], None], data: bytes) -> float:
    # CPU time of this thread, not wall time: a fuzzer run at nice 19 on a shared machine is
    # descheduled for whole time slices, which says nothing about the input.
    start = time.thread_time()
    func(data)
    return time.thread_time() - start


def split_chunks(stream: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    """Cut ``stream`` into chunks whose lengths cycle through ``cuts`` (each at least 1)."""
    if not cuts:
        cuts = (len(stream) or 1,)
    pos = 0
    i = 0
    while pos < len(stream):
        size = max(1, cuts[i % len(cuts)])
        yield stream[pos : pos + size]
        pos += size
        i += 1


# Coverage comes from smtpx, the pure-Python stdlib parsers it hands input to, and the
# targets' own checks. All of the stdlib (atheris.instrument_all) takes minutes to instrument
# on a shared machine.
_INSTRUMENTED = ("smtpx", "email", "ipaddress", "publicsuffixlist", "fuzz")


def _instrument_smtpx() -> int:
    """Add atheris coverage to every loaded function of the modules above; return the count."""
    import atheris  # noqa: PLC0415 (only the fuzzing entry point needs it)

    funcs = [
        obj
        for obj in gc.get_objects()
        # A function's __module__ can be None (exec'd code), whatever typeshed says.
        if isinstance(obj, types.FunctionType)
        and str(getattr(obj, "__module__", None)).split(".")[0] in _INSTRUMENTED
    ]
    for func in funcs:
        atheris.instrument_func(func)
    return len(funcs)


def main(target: Target, argv: Sequence[str] | None = None) -> None:
    """Fuzz ``target`` with atheris; libFuzzer flags and corpus folders come from ``argv``.

    With no folder on the command line, new inputs go to ``fuzz/.work/<name>`` (ignored by git)
    and ``fuzz/corpus/<name>`` seeds it. Defaults added unless given: ``-dict``,
    ``-max_len``, ``-timeout=120``, ``-rss_limit_mb=2048`` and
    ``-artifact_prefix=fuzz/.work/artifacts/<name>/``.
    """
    import atheris  # noqa: PLC0415 (only the fuzzing entry point needs it)

    args = list(sys.argv if argv is None else argv)
    given = {a.split("=", 1)[0] for a in args[1:] if a.startswith("-")}
    defaults = {
        "-dict": str(DICT_FILE),
        "-max_len": str(target.max_len),
        "-timeout": "120",
        "-rss_limit_mb": "2048",
        "-artifact_prefix": str(WORK_DIR / "artifacts" / target.name) + os.sep,
    }
    for flag in target.flags:
        defaults.setdefault(flag.split("=", 1)[0], flag.split("=", 1)[1])
    extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
    if not any(not a.startswith("-") for a in args[1:]):
        if not any((CORPUS_DIR / target.name).glob("*")):
            from fuzz import make_corpus  # noqa: PLC0415 (imports every target)

            make_corpus.write([target.name])
        work = WORK_DIR / target.name
        work.mkdir(parents=True, exist_ok=True)
        extra += [str(work), str(CORPUS_DIR / target.name)]
    (WORK_DIR / "artifacts" / target.name).mkdir(parents=True, exist_ok=True)
    memcheck = os.environ.get("SMTPX_FUZZ_MEMCHECK", "1") != "0"
    if memcheck:
        tracemalloc.start()

    scale = os.environ.get("SMTPX_FUZZ_SCALE", "1") != "0"

    def one(data: bytes) -> None:
        target.run_one(data, memcheck=memcheck, skip_known=True, scale=scale)

    with contextlib.suppress(Exception):
        target.test_one_input(b"")  # loads what a target imports lazily, e.g. the twins
    print(f"INFO: instrumented {_instrument_smtpx()} functions", file=sys.stderr)
    atheris.Setup([args[0], *args[1:], *extra], one)
    atheris.Fuzz()
