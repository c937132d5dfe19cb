""" "Double the input, at most about double the time" (STYLE 2.15), as a ratio within one run.

Absolute times mean nothing on a shared machine, so every check compares two input sizes in the
same process, interleaved, and keeps the best of several runs of each: noise only ever adds time,
so the minimum is the cleanest reading. A quadratic cost shows a ratio near 4 for twice the input;
a linear one near 2. The bound below (3.0 by default) sits between them with room for noise.

Usage::

    assert_linear(lambda n: b"=?" * n, decode, n=200_000)
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["assert_linear", "time_ratio"]

T = TypeVar("T")


def _best_time(func: Callable[[T], object], arg: T) -> float:
    start = time.perf_counter()
    func(arg)
    return time.perf_counter() - start


def time_ratio(
    make_input: Callable[[int], T],
    func: Callable[[T], object],
    *,
    n: int,
    repeats: int = 5,
) -> tuple[float, float, float]:
    """Best time of ``func`` on an input of size ``n`` and of size ``2 n``, and their ratio.

    Args:
        make_input: builds the input for a size (built once per size, outside the timing).
        func: the work under test.
        n: the smaller size; pick it so that one call takes at least some milliseconds.
        repeats: runs per size, interleaved small/large.

    Returns:
        ``(t_small, t_large, t_large / t_small)``.
    """
    small, large = make_input(n), make_input(2 * n)
    func(small)  # warm caches and lazy imports outside the timing
    best_small = best_large = float("inf")
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            best_small = min(best_small, _best_time(func, small))
            best_large = min(best_large, _best_time(func, large))
    finally:
        if gc_was_on:
            gc.enable()
    return best_small, best_large, best_large / max(best_small, 1e-9)


def assert_linear(
    make_input: Callable[[int], T],
    func: Callable[[T], object],
    *,
    n: int,
    repeats: int = 5,
    bound: float = 3.0,
    attempts: int = 3,
) -> None:
    """Fail when doubling the input more than about doubles the time (see the module doc).

    A reading over the bound is taken again (up to ``attempts`` times, with more runs each time):
    a loaded machine can spoil one reading, but a super-linear cost fails every one of them.
    """
    t_small = t_large = ratio = float("inf")
    for attempt in range(attempts):
        t_small, t_large, ratio = time_ratio(make_input, func, n=n, repeats=repeats * (attempt + 1))
        if ratio < bound:
            return
    assert ratio < bound, (
        f"time grew {ratio:.2f}x for 2x the input (n={n}: {t_small * 1e3:.2f} ms, "
        f"2n: {t_large * 1e3:.2f} ms); expected about 2x"
    )
