"""``edge_cnn.bench.run``: every (model, provider, threads, batch) configuration, measured the same way.

Per configuration: model size, session/interpreter creation time, first inference (for
TensorRT this includes the engine build), then warm-up and timed runs over rotating input
buffers, statistics, throughput and memory. A configuration that fails is reported with
its error and the others still run.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_cnn.bench import inputs as bench_inputs
from edge_cnn.bench.accuracy import add_accuracy, labelled_items
from edge_cnn.bench.calls import Call
from edge_cnn.bench.config import BenchConfig
from edge_cnn.bench.engines import ENGINES, engine_for
from edge_cnn.bench.gpu import GPU_PROVIDERS, tensorrt_options
from edge_cnn.bench.targets import Target, expand_targets, match_baseline
from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import write_json, write_text
from edge_cnn.machine import gpu_memory_mb, machine_info
from edge_cnn.report import to_csv, to_markdown
from edge_cnn.timing import LatencyStats, measure_calls, summarize

TABLE_COLUMNS = [
    "model", "precision", "provider", "batch", "threads", "size_mb", "create_ms", "first_ms",
    "mean_ms", "p50_ms", "p90_ms", "p99_ms", "images_per_s", "peak_rss_mb", "speedup", "accuracy_pct", "status",
]
KEY_COLUMNS = ["model", "precision", "provider", "batch", "threads", "size_mb", "p50_ms", "images_per_s",
               "speedup", "accuracy_pct", "status"]  # the terminal's table without --wide


@dataclasses.dataclass
class BenchResult:
    """One configuration's measurements (times in ms)."""

    target: str
    format: str
    precision: str | None
    backend: str  # onnxruntime, litert or keras
    provider: str  # cpu, cuda, tensorrt (ORT); cpu (LiteRT); tf (Keras)
    batch: int
    threads: int | None  # ORT intra-op / LiteRT num_threads; None = the library's default
    inter_op_threads: int | None = None  # ORT's setting (0 = its default)
    io_binding: bool = False
    model_bytes: int | None = None
    input_shape: list[int] | None = None
    input_dtype: str | None = None
    session_ms: float | None = None
    first_inference_ms: float | None = None
    latency: LatencyStats | None = None
    throughput: float | None = None  # images per second
    peak_rss_mb: float | None = None  # the process's high-water mark so far
    gpu_memory_mb: float | None = None
    speedup: float | None = None  # baseline p50 / this p50, same batch
    accuracy_pct: float | None = None  # top-1 on bench --data's class folders (edge_cnn.bench.accuracy)
    status: str = "OK"  # OK or ERROR
    error: str | None = None
    note: str | None = None
    profile_file: str | None = None
    top_ops: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    durations_ms: list[float] = dataclasses.field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        """Flat row for the table and the JSON/CSV/Markdown files (raw durations left out)."""
        stats = dataclasses.asdict(self.latency) if self.latency else {}
        return {
            "model": self.target,
            "format": self.format,
            "precision": self.precision,
            "backend": self.backend,
            "provider": self.provider,
            "batch": self.batch,
            "threads": self.threads,
            "inter_op_threads": self.inter_op_threads,
            "io_binding": self.io_binding,
            "size_mb": None if self.model_bytes is None else self.model_bytes / 1e6,  # MB = 10^6 bytes everywhere
            "input_shape": "x".join(map(str, self.input_shape)) if self.input_shape else None,
            "input_dtype": self.input_dtype,
            "create_ms": self.session_ms,
            "first_ms": self.first_inference_ms,
            **{key: stats.get(key) for key in ("runs", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms",
                                                "p95_ms", "p99_ms", "max_ms")},
            "images_per_s": self.throughput,
            "peak_rss_mb": self.peak_rss_mb,
            "gpu_memory_mb": self.gpu_memory_mb,
            "speedup": self.speedup,
            "accuracy_pct": self.accuracy_pct,
            "status": self.status,
            "error": self.error,
            "note": self.note,
        }


@dataclasses.dataclass
class BenchReport:
    results: list[BenchResult]
    machine: dict[str, Any]
    settings: dict[str, Any]

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.results]

    @property
    def failures(self) -> list[BenchResult]:
        return [r for r in self.results if r.status != "OK"]

    def machine_line(self) -> str:
        m = self.machine
        gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in m["gpu"]) or "no NVIDIA GPU"
        return (f"{m['cpu']}, {m['cores']} cores [{' '.join(m['cpu_flags']) or 'no AVX2'}]; {gpus}; "
                f"onnxruntime {m['onnxruntime']}, ai-edge-litert {m['ai-edge-litert']}, tensorflow {m['tensorflow']}, "
                f"numpy {m['numpy']}, python {m['python']}")

    def write(self, json_path=None, csv_path=None, md_path=None) -> None:
        """JSON (machine info, settings, rows, raw per-run times), CSV (machine info as columns of every
        row) and Markdown (machine info above the table)."""
        rows = self.rows()
        if json_path:
            write_json(json_path, {
                "machine": self.machine,
                "settings": self.settings,
                "rows": rows,
                "profiles": [{"model": r.target, "provider": r.provider, "threads": r.threads,
                              "file": r.profile_file, "top_ops": r.top_ops} for r in self.results if r.profile_file],
                "durations_ms": [r.durations_ms for r in self.results],
            })
        if csv_path:
            machine = {f"machine_{k}": v if isinstance(v, (str, int, type(None))) else json.dumps(v)
                       for k, v in self.machine.items()}
            write_text(csv_path, to_csv([{**row, **machine} for row in rows]))
        if md_path:
            write_text(md_path, f"Machine: {self.machine_line()}\n\n" + to_markdown(rows))


def run(targets: Sequence[str | Path] | str | Path, config: BenchConfig | None = None, **options: Any) -> BenchReport:
    """Benchmark every target under every configuration of ``config`` (a ``BenchConfig``; without one,
    ``options`` are its fields: ``provider="cpu,cuda"``, ``batch=[1, 8]``, ``runs=50``, ...).

    ``io_binding`` None = on for the CUDA/TensorRT providers, off on the CPU (True on the CPU runs
    the same IO-binding code path). ``profile`` writes ORT profiles, and each .tflite operator's time alone,
    into ``profile_dir``.
    ``progress`` None = shown when stderr is a terminal.
    """
    config = (config or BenchConfig(**options)).validate()
    batches, thread_counts, providers = config.batches, config.thread_counts, config.providers
    models = expand_targets(_as_list(targets), keras=config.keras)
    baseline_label = match_baseline(models, config.baseline)
    shape = bench_inputs.parse_shape(config.input_shape) if config.input_shape is not None else None
    labelled = {}
    if config.data is not None:
        bench_inputs.image_files(config.data)  # a missing or empty folder fails before any model is timed
        labelled = {model.label: items for model in models if model.labels
                    for items in [labelled_items(config.data, model.labels)] if items}
    duration = config.duration
    settings = dict(
        providers=providers, batch=batches, threads=thread_counts, inter_op_threads=config.inter_op_threads,
        warmup=config.warmup, runs=None if duration else config.runs, duration_s=duration,
        data=str(config.data) if config.data else None, input_shape=list(shape) if shape else None,
        include_copies=config.include_copies, graph_optimization=config.graph_opt, trt_fp16=config.trt_fp16,
        trt_int8=config.trt_int8, trt_cache=str(config.trt_cache) if config.trt_cache else None,
        baseline=baseline_label, keras_timing="tf.function(model(x, training=False)), outputs fetched with .numpy()",
    )
    profile_dir = config.profile_folder
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    session_options = dict(
        batches=batches, warmup=config.warmup, runs=config.runs, duration=duration, data=config.data,
        input_shape=shape, include_copies=config.include_copies, graph_optimization=config.graph_opt,
        inter_op_threads=config.inter_op_threads, io_binding=config.io_binding, profile_dir=profile_dir,
        trt=tensorrt_options(config.trt_fp16, config.trt_int8, config.trt_cache),
    )
    results: list[BenchResult] = []
    with _Progress(config.progress) as bar:
        for model in models:
            for provider, thread_count in engine_for(model.format).configurations(providers, thread_counts):
                results += _bench_session(model, provider, thread_count, bar=bar, **session_options)
    apply_speedups(results, baseline_label)
    add_accuracy(results, models, labelled)
    return BenchReport(results, machine_info(), settings)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _bench_session(
    model: Target, provider: str, thread_count: int | None, *, batches: list[int], bar: "_Progress", **options: Any
) -> list[BenchResult]:
    """Open the model once for (provider, threads), then measure each batch size on that session."""
    engine = engine_for(model.format)
    use_binding = options["io_binding"] if options["io_binding"] is not None else provider in GPU_PROVIDERS

    def result(batch: int, **fields: Any) -> BenchResult:
        return BenchResult(
            target=model.label, format=model.format, precision=model.precision, backend=engine.name,
            provider=provider, batch=batch, threads=thread_count, note=model.note,
            io_binding=use_binding and engine.io_binding,
            model_bytes=model.path.stat().st_size if model.path.is_file() else None, **fields,
        )

    if engine is ENGINES["keras"]:
        import edge_cnn.keras  # noqa: F401  (importing TensorFlow is not part of the model's load time)
    try:
        start = time.perf_counter()
        backend = engine.open(model, provider, thread_count, options)
        session_ms = (time.perf_counter() - start) * 1e3
    except Exception as exc:  # one failed configuration does not sink the others
        return [result(b, status="ERROR", error=_message(exc)) for b in batches]
    results = []
    for batch in batches:
        try:
            call = engine.call(backend, provider, use_binding and engine.io_binding, options["include_copies"])
            measured = _measure(model, backend, call, batch, bar=bar, label=f"{model.path.name} {provider} b{batch}",
                                **options)
            results.append(result(batch, session_ms=session_ms, inter_op_threads=_inter_op(backend), **measured))
        except Exception as exc:
            results.append(result(batch, session_ms=session_ms, status="ERROR", error=_message(exc)))
    if options["profile_dir"] is not None and engine.profiles:
        profile_file, top = engine.operator_profile(model, backend, thread_count, options)
        for item in results:
            item.profile_file, item.top_ops = profile_file, top
    return results


def _message(exc: Exception) -> str:
    if isinstance(exc, EdgeCNNError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _inter_op(backend: Any) -> int | None:
    session = getattr(backend, "session", None)
    return session.get_session_options().inter_op_num_threads if session is not None else None


def _input_info(model: Target, backend: Any) -> tuple[tuple[int, ...], str, tuple[float, int] | None]:
    """(shape with -1 for dynamic, dtype, quantization) of the model's first input; the manifest supplies
    the quantization a file does not carry (an int8 ONNX input)."""
    shape, dtype, quantization = engine_for(model.format).input_info(backend)
    if quantization is None and model.inputs and model.inputs[0].quantization is not None:
        quantization = (model.inputs[0].quantization.scale, model.inputs[0].quantization.zero_point)
    return shape, dtype, quantization


def _make_inputs(model: Target, backend: Any, batch: int, data, input_shape) -> list[np.ndarray]:
    model_shape, dtype, quantization = _input_info(model, backend)
    shape = bench_inputs.resolve_shape(
        model_shape, batch, input_shape=input_shape, spec=model.preprocess, model=str(model.path),
        fixed_batch=engine_for(model.format).fixed_batch,
    )
    if data is not None:
        if model.preprocess is None:
            raise EdgeCNNError(
                f"--data needs the model's preprocessing from its manifest: pass the export folder, not {model.path}"
            )
        return bench_inputs.image_inputs(data, model.preprocess, shape, dtype, quantization=quantization)
    value_range = model.preprocess.value_range() if model.preprocess else (0.0, 1.0)
    return bench_inputs.random_inputs(shape, dtype, value_range=value_range, quantization=quantization)


def _measure(
    model: Target, backend: Any, call: Call, batch: int, *, bar: "_Progress", label: str, warmup: int, runs: int,
    duration: float | None, data, input_shape, **_: Any,
) -> dict[str, Any]:
    buffers = _make_inputs(model, backend, batch, data, input_shape)
    prepared = [call.prepare(b) for b in buffers]
    start = time.perf_counter()
    call(prepared[0])
    first_ms = (time.perf_counter() - start) * 1e3
    durations = measure_calls(
        call, prepared, warmup=warmup, runs=runs, duration_s=duration, on_run=bar.track(label, warmup, runs, duration)
    )
    stats = summarize(durations)
    finite = all(np.all(np.isfinite(o)) for p in prepared for o in call.fetch(p))
    provider_gpu = getattr(backend, "providers", None) and any("CUDA" in p or "Tensorrt" in p for p in backend.providers)
    return dict(
        input_shape=list(buffers[0].shape),
        input_dtype=str(buffers[0].dtype),
        first_inference_ms=first_ms,
        latency=stats,
        throughput=stats.throughput(batch),
        peak_rss_mb=_peak_rss_mb(),
        gpu_memory_mb=gpu_memory_mb() if provider_gpu else None,
        durations_ms=[d * 1e3 for d in durations],
        status="OK" if finite else "ERROR",
        error=None if finite else "outputs contain NaN or infinity",
    )


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB on Linux


def apply_speedups(results: list[BenchResult], baseline_label: str | None) -> None:
    """speedup = the baseline's p50 / this p50 at the same batch (same threads when there is one)."""
    measured = [r for r in results if r.latency is not None]
    base = [r for r in measured if r.target == baseline_label]
    for item in measured:
        same_batch = [b for b in base if b.batch == item.batch]
        same_threads = [b for b in same_batch if b.threads == item.threads] or same_batch
        if same_threads and item.latency.p50_ms > 0:
            item.speedup = same_threads[0].latency.p50_ms / item.latency.p50_ms


class _Progress:
    """A rich progress bar per configuration, when stderr is a terminal (or asked for)."""

    def __init__(self, enabled: bool | None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(stderr=True), transient=True)
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def track(self, label: str, warmup: int, runs: int, duration: float | None):
        """An ``on_run`` callback (called outside the timed span) that redraws at most ~100 times."""
        if self._progress is None:
            return None
        if duration:
            return self._track_time(label, duration)
        progress = self._progress
        task = progress.add_task(label, total=runs)
        every = max(1, runs // 100)

        def on_run(i: int) -> None:
            if i % every == 0 or i == runs:
                progress.update(task, completed=i)

        return on_run

    def _track_time(self, label: str, duration: float):
        progress = self._progress
        task = progress.add_task(f"{label} ({duration:g} s)", total=duration)
        start = time.perf_counter()

        def on_run(i: int) -> None:
            if i % 10 == 0:
                progress.update(task, completed=min(duration, time.perf_counter() - start))

        return on_run
