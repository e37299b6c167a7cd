"""Timing helpers shared by the benchmark scripts (wall clock, no statistics beyond best-of)."""

import time


def mean_seconds(fn, min_time):
    """Call ``fn`` until ``min_time`` seconds have passed; mean seconds per call."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_time:
            return dt / n


def best_seconds(fn, repeats, min_time=0.3):
    """Warm up once, then the best of ``repeats`` rounds of :func:`mean_seconds`."""
    fn()  # warm-up / trace
    return min(mean_seconds(fn, min_time) for _ in range(repeats))
