"""How bench drives each runtime: which configurations it runs, how it opens, calls and feeds a model.

The format table (``edge_cnn.formats``) says which runtime runs a format; this is the one
place where bench knows what differs between runtimes, so a format registered with an
existing runtime is benchmarked without touching the runner. ``keras`` is the baseline:
the Keras model the artifacts were exported from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edge_cnn.backends import open_backend
from edge_cnn.bench.calls import Call, KerasCall, LiteRTCall, OnnxCall
from edge_cnn.bench.gpu import GPU_PROVIDERS, IOBindingCall, session_providers
from edge_cnn.bench.litert_ops import profile_operators
from edge_cnn.bench.profile import top_operators
from edge_cnn.bench.targets import Target
from edge_cnn.formats import get_format


def _profile_path(folder: Path, model: Target, kind: str, thread_count: int | None) -> Path:
    """Where ``--profile`` writes a model's profile: ``<file stem>_<provider or kind>_t<threads>``, the stem made
    safe for a file name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.path.stem)
    return folder / f"{stem}_{kind}_t{thread_count or 'default'}"


class OnnxRuntimeEngine:
    """Every requested provider and thread count; IO binding and per-operator profiles; a fixed batch
    dimension is taken as it is (ONNX graphs may fix it)."""

    name = "onnxruntime"
    io_binding = profiles = fixed_batch = True

    def configurations(self, providers: list[str], thread_counts: list[int | None]) -> list[tuple[str, int | None]]:
        return [(p, t) for p in providers for t in thread_counts]

    def open(self, model: Target, provider: str, thread_count: int | None, options: dict[str, Any]) -> Any:
        profile_prefix = None
        if options["profile_dir"] is not None:
            profile_prefix = str(_profile_path(options["profile_dir"], model, provider, thread_count))
        return open_backend(
            model.path,
            backend=model.format,
            providers=session_providers(provider),
            threads=thread_count,
            inter_op_threads=options["inter_op_threads"],
            graph_optimization=options["graph_optimization"],
            provider_options={"tensorrt": options["trt"]} if provider == "tensorrt" else None,
            profile_prefix=profile_prefix,
        )

    def call(self, backend: Any, provider: str, use_binding: bool, include_copies: bool) -> Call:
        if use_binding:
            device = "cuda" if provider in GPU_PROVIDERS else "cpu"
            return IOBindingCall(backend.session, device=device, include_copies=include_copies)
        return OnnxCall(backend.session)

    def input_info(self, backend: Any) -> tuple[tuple[int, ...], str, tuple[float, int] | None]:
        info = backend.inputs[0]
        return tuple(info.shape), info.dtype, info.quantization

    def operator_profile(self, model: Target, backend: Any, thread_count: int | None,
                         options: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        """(onnxruntime's profile file, the operator types that take the time), for ``--profile``."""
        profile_file = backend.session.end_profiling()
        return profile_file, top_operators(profile_file) if profile_file else []


class LiteRTEngine(OnnxRuntimeEngine):
    """The CPU only, once per thread count; ``--profile`` times each operator alone (``litert_ops``)."""

    name = "litert"
    io_binding = fixed_batch = False
    profiles = True

    def configurations(self, providers: list[str], thread_counts: list[int | None]) -> list[tuple[str, int | None]]:
        return [("cpu", t) for t in thread_counts]

    def open(self, model: Target, provider: str, thread_count: int | None, options: dict[str, Any]) -> Any:
        return open_backend(model.path, backend=model.format, threads=thread_count)

    def call(self, backend: Any, provider: str, use_binding: bool, include_copies: bool) -> Call:
        return LiteRTCall(backend)

    def operator_profile(self, model: Target, backend: Any, thread_count: int | None,
                         options: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
        stem = _profile_path(options["profile_dir"], model, "litert_operators", thread_count)
        profile_file = stem.with_name(stem.name + ".json")  # not with_suffix: a stem may hold dots
        return profile_operators(model.path, thread_count, options["runs"] or 20, profile_file)


class KerasEngine(LiteRTEngine):
    """Once, with TensorFlow's own threading (it cannot be changed once TensorFlow has started); no profile."""

    name = "keras"
    profiles = False

    def configurations(self, providers: list[str], thread_counts: list[int | None]) -> list[tuple[str, int | None]]:
        return [("tf", None)]

    def open(self, model: Target, provider: str, thread_count: int | None, options: dict[str, Any]) -> Any:
        from edge_cnn.keras_file import load_keras_model

        return load_keras_model(model.path)

    def call(self, backend: Any, provider: str, use_binding: bool, include_copies: bool) -> Call:
        return KerasCall(backend)

    def input_info(self, backend: Any) -> tuple[tuple[int, ...], str, tuple[float, int] | None]:
        return tuple(-1 if d is None else int(d) for d in backend.inputs[0].shape), "float32", None


ENGINES = {engine.name: engine for engine in (OnnxRuntimeEngine(), LiteRTEngine(), KerasEngine())}


def engine_for(target_format: str) -> OnnxRuntimeEngine:
    """The engine of a bench target: its format's runtime, or the Keras baseline."""
    return ENGINES["keras" if target_format == "keras" else get_format(target_format).runtime]
