"""Latency measurement and its statistics; used by ``edgecnn bench`` and export's quick column."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass
class LatencyStats:
    """Milliseconds per call over the timed runs (warm-up excluded)."""

    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    total_s: float

    def throughput(self, batch: int) -> float:
        """Images per second: batch x runs / timed seconds."""
        return batch * self.runs / self.total_s if self.total_s > 0 else float("nan")


def summarize(durations_s: Sequence[float]) -> LatencyStats:
    """Statistics of per-call durations in seconds (percentiles by linear interpolation, as numpy)."""
    if len(durations_s) == 0:
        raise ValueError("no timed runs to summarise")
    ms = np.asarray(durations_s, dtype=np.float64) * 1e3
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    return LatencyStats(
        runs=int(ms.size),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        min_ms=float(ms.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        max_ms=float(ms.max()),
        total_s=float(ms.sum() / 1e3),
    )


def time_calls(
    call: Callable[[object], object],
    inputs: Sequence[object],
    *,
    warmup: int = 10,
    runs: int | None = 100,
    duration_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_run: Callable[[int], None] | None = None,
) -> LatencyStats:
    """Time ``call(inputs[i % len(inputs)])``: ``warmup`` untimed calls, then ``runs`` calls or
    as many as fit in ``duration_s`` (at least one). Inputs rotate so caches are not flattered."""
    return summarize(
        measure_calls(call, inputs, warmup=warmup, runs=runs, duration_s=duration_s, clock=clock, on_run=on_run)
    )


def measure_calls(
    call: Callable[[object], object],
    inputs: Sequence[object],
    *,
    warmup: int = 10,
    runs: int | None = 100,
    duration_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    on_run: Callable[[int], None] | None = None,
) -> list[float]:
    """The per-call durations in seconds behind ``time_calls`` (bench keeps them for its plots).

    Only ``call`` sits between the two clock readings; ``on_run`` runs outside the timed span."""
    if not inputs:
        raise ValueError("time_calls needs at least one input")
    if duration_s is None and not runs:
        raise ValueError("time_calls needs runs > 0 or a duration")
    count = len(inputs)
    for i in range(warmup):
        call(inputs[i % count])
    durations: list[float] = []
    deadline = clock() + duration_s if duration_s else None
    i = 0
    while (deadline is None and i < runs) or (deadline is not None and (i == 0 or clock() < deadline)):
        item = inputs[i % count]
        start = clock()
        call(item)
        durations.append(clock() - start)
        i += 1
        if on_run:
            on_run(i)
    return durations
