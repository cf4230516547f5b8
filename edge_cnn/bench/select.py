"""``edgecnn bench EXPORT --select``: measure every correct artifact on this device and record the fastest.

"Correct" is the export's parity verdict OK. Each embedded artifact is timed at every thread
count from 1 to the number of cores (unless ``--threads`` says otherwise) and at each batch
size asked for; the fastest at the first batch size, with its thread count, is written to
``selection.json`` under this CPU's fingerprint, which the runtime then follows.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

from edge_cnn.bench.config import BenchConfig
from edge_cnn.bench.runner import BenchReport, run
from edge_cnn.errors import EdgeCNNError
from edge_cnn.machine import cpu_fingerprint, cpu_info
from edge_cnn.manifest import MANIFEST_NAME, load_manifest
from edge_cnn.selection import Choice, record


@dataclasses.dataclass
class Selection:
    choice: Choice
    fingerprint: str
    path: Path  # the selection.json written
    report: BenchReport


def select_artifact(export: str | os.PathLike, config: BenchConfig | None = None, **options) -> Selection:
    folder = Path(export)
    if not (folder / MANIFEST_NAME).is_file():
        raise EdgeCNNError(f"--select measures an export folder, and {folder} has no {MANIFEST_NAME}: pass RUN/export")
    config = config or BenchConfig(**options)
    if config.provider != "cpu" or config.threads is None:
        config = dataclasses.replace(config, provider="cpu", threads=config.threads or list(range(1, (os.cpu_count() or 1) + 1)))
    config = dataclasses.replace(config, keras=False)
    manifest = load_manifest(folder)
    correct = {str(folder / artifact.path): artifact.path for artifact in manifest.artifacts if artifact.status == "OK"}
    report = run([folder], config)
    first_batch = config.batches[0]
    measured = [r for r in report.results if r.status == "OK" and r.target in correct and r.batch == first_batch]
    if not measured:
        raise EdgeCNNError(f"no artifact of {folder} both passed parity and ran here: re-export, then select again")
    best = min(measured, key=lambda r: r.latency.p50_ms)
    choice = Choice(correct[best.target], best.threads, best.latency.p50_ms, first_batch)
    cpu = cpu_info()
    fingerprint = cpu_fingerprint(cpu)
    measured_on = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    table = [{key: row[key] for key in ("model", "precision", "batch", "threads", "p50_ms", "status")} for row in report.rows()]
    return Selection(choice, fingerprint, record(folder, fingerprint, cpu, choice, table, measured_on), report)
