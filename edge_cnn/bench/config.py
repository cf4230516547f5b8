"""``BenchConfig``: every bench setting in one object, the defaults defined once.

Its fields are ``edgecnn bench``'s flags and a recipe's keys (the CLI reads its defaults from
here), and ``edge_cnn.bench.run(targets, config)`` takes it. Lists (providers, batch sizes,
thread counts) may be given as comma-separated text, as on the command line, or as sequences.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from edge_cnn.backends import PROVIDERS
from edge_cnn.errors import EdgeCNNError

GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")


@dataclasses.dataclass
class BenchConfig:
    provider: Sequence[str] | str = "cpu"
    batch: Sequence[int] | int | str = 1
    threads: Sequence[int | None] | int | str | None = None  # None: the library's default
    inter_op_threads: int | None = None
    warmup: int = 10
    runs: int = 100
    duration: float | None = None  # seconds instead of runs
    data: str | os.PathLike | None = None
    input_shape: str | Sequence[int] | None = None
    include_copies: bool = False
    io_binding: bool | None = None  # None: on for the CUDA/TensorRT providers
    graph_opt: str = "all"
    profile: bool = False
    profile_dir: str | os.PathLike = "bench_profiles"
    baseline: str | None = None
    trt_fp16: bool = False
    trt_int8: bool = False
    trt_cache: str | os.PathLike | None = None
    keras: bool = True
    progress: bool | None = None  # None: shown when stderr is a terminal

    @property
    def providers(self) -> list[str]:
        return _items(self.provider, str, "--provider")

    @property
    def batches(self) -> list[int]:
        return _items(self.batch, int, "--batch")

    @property
    def thread_counts(self) -> list[int | None]:
        return [None] if self.threads is None else _items(self.threads, int, "--threads")

    @property
    def profile_folder(self) -> Path | None:
        return Path(self.profile_dir) if self.profile else None

    def validate(self) -> "BenchConfig":
        """Refuse impossible settings before any model is opened, naming the flag."""
        if not self.providers:
            raise EdgeCNNError("no provider given: use --provider cpu, cuda or tensorrt")
        for provider in self.providers:
            if provider not in PROVIDERS:
                raise EdgeCNNError(f"provider {provider!r} is unknown: use one of {', '.join(PROVIDERS)}")
        if any(b < 1 for b in self.batches):
            raise EdgeCNNError(f"--batch {self.batches} must be positive integers")
        if any(t is not None and t < 1 for t in self.thread_counts):
            raise EdgeCNNError(f"--threads {self.thread_counts} must be positive integers")
        if self.warmup < 0:
            raise EdgeCNNError("--warmup must be 0 or more")
        if self.duration is not None and self.duration <= 0:
            raise EdgeCNNError("--duration must be a positive number of seconds")
        if self.duration is None and self.runs < 1:
            raise EdgeCNNError("--runs must be at least 1")
        if self.graph_opt not in GRAPH_OPTIMIZATIONS:
            raise EdgeCNNError(f"--graph-opt {self.graph_opt!r} is unknown: use one of {', '.join(GRAPH_OPTIMIZATIONS)}")
        return self


def _items(value, kind, flag: str) -> list:
    """'1,8,32' or [1, 8, 32] or 1 -> [1, 8, 32] (``kind`` each)."""
    parts = str(value).split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        items = [kind(part.strip() if isinstance(part, str) else part) for part in parts if str(part).strip()]
    except (TypeError, ValueError):
        raise EdgeCNNError(f"{flag} {value!r} is not a comma-separated list, e.g. 1,8,32") from None
    if not items:
        raise EdgeCNNError(f"{flag} {value!r} is empty")
    return items
