"""Shared timing helper: alternate the contenders so machine-load drift hits all of them."""

import statistics
import time


def alternate_medians(contenders, repeats):
    """``contenders``: {name: zero-argument callable}; returns {name: median seconds}."""
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
