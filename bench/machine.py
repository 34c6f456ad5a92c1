"""How fast this machine runs Python at the moment of a benchmark.

The shared 2-CPU machine's speed moves between sessions and within one (the same pure-Python
loop took 0.56 s and 0.89 s ten minutes apart, nothing else running), and a millisecond floor
means little without it. The benchmarks print this figure before and after their timings, so
two runs compare only where it is alike.
"""

from __future__ import annotations

import os
import statistics
import time


def reference_loop_s(rounds: int = 3) -> float:
    """Median seconds of a fixed pure-Python loop (ten million multiply-adds): lower is faster."""
    times = []
    for _ in range(rounds):
        started = time.process_time()
        sum(i * i for i in range(10_000_000))
        times.append(time.process_time() - started)
    return statistics.median(times)


def describe() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"reference loop {reference_loop_s():.2f} s (CPU; lower is faster)"
    )
