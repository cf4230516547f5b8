"""Run an exported file with its embedded runtime: the one wrapper used by the runtime, bench and parity.

The format table (``edge_cnn.formats``) says which runtime runs a format; ``RUNTIMES`` maps
each embedded runtime to its wrapper here. No TensorFlow: onnxruntime and ai-edge-litert only. A requested ONNX Runtime execution
provider that is not active after session creation (``session.get_providers()``) is a
``ProviderError``, never a silent CPU fallback.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError, ManifestError, ModelFileError, ProviderError
from edge_cnn.formats import Format, embedded_formats, format_of_file, get_format

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
PROVIDER_NEEDS = {
    "cuda": "an NVIDIA GPU and driver, CUDA 13 runtime and cuDNN 9 libraries (as onnxruntime-gpu 1.31 requires) "
    "on LD_LIBRARY_PATH, with onnxruntime-gpu installed",
    "tensorrt": "an NVIDIA GPU with TensorRT 10 libraries (pip: tensorrt) on LD_LIBRARY_PATH besides the CUDA "
    "provider's libraries, with onnxruntime-gpu installed",
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic
    dtype: str  # numpy dtype name
    quantization: tuple[float, int] | None = None  # (scale, zero_point) of int8/uint8 tensors


def format_for(path: str | Path, backend: str = "auto") -> Format:
    """The embedded format of ``path``: from its suffix, or the explicit ``backend`` (a format name)."""
    choices = ", ".join(embedded_formats())
    if backend != "auto":
        if backend not in embedded_formats():
            raise EdgeCNNError(f"backend {backend!r} is unknown: use auto, {choices}")
        return get_format(backend)
    fmt = format_of_file(path)
    if fmt is None or not fmt.embedded:
        suffixes = ", ".join(get_format(name).suffix for name in embedded_formats())
        raise ModelFileError(f"{path} is none of {suffixes}: pass a model file or its export folder")
    return fmt


def open_backend(path: str | Path, backend: str = "auto", **options: Any) -> "OnnxBackend | TFLiteBackend":
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    return RUNTIMES[format_for(path, backend).runtime](path, **options)


def _check_batch(batch: np.ndarray, info: TensorInfo, path: Path) -> np.ndarray:
    batch = np.asarray(batch)
    expected = info.shape
    ok = batch.ndim == len(expected) and all(e in (-1, None) or e == b for e, b in zip(expected[1:], batch.shape[1:]))
    if not ok:
        shown = "x".join("N" if d in (-1, None) else str(d) for d in expected)
        raise EdgeCNNError(f"input of shape {tuple(batch.shape)} does not fit {path.name}, which takes {shown}")
    if batch.dtype != np.dtype(info.dtype):
        batch = batch.astype(info.dtype)
    return batch


class OnnxBackend:
    """An onnxruntime InferenceSession with checked providers."""

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] = ("cpu",),
        threads: int | None = None,
        inter_op_threads: int | None = None,
        graph_optimization: str = "all",
        provider_options: dict[str, dict[str, Any]] | None = None,
        profile_prefix: str | None = None,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        names = []
        for provider in providers:
            if provider not in PROVIDERS:
                raise EdgeCNNError(f"provider {provider!r} is unknown: use one of {', '.join(PROVIDERS)}")
            names.append(PROVIDERS[provider])
        if "CPUExecutionProvider" not in names:
            names.append("CPUExecutionProvider")  # for nodes the GPU providers do not take
        options = ort.SessionOptions()
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if graph_optimization not in levels:
            raise EdgeCNNError(f"graph optimization {graph_optimization!r} is unknown: use {', '.join(levels)}")
        options.graph_optimization_level = levels[graph_optimization]
        if threads:
            options.intra_op_num_threads = int(threads)
        if inter_op_threads:
            options.inter_op_num_threads = int(inter_op_threads)
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        options.log_severity_level = 3
        per_provider = provider_options or {}
        opts = [per_provider.get(p, {}) for p in providers] + ([{}] if len(names) > len(providers) else [])
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=names, provider_options=opts)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelFileError(f"{self.path} cannot be loaded by onnxruntime ({_first_line(exc)}): re-export it") from None
        active = self.session.get_providers()
        for provider in providers:
            if PROVIDERS[provider] not in active:
                raise ProviderError(
                    f"provider {provider!r} was requested but is not active (active: {', '.join(active)}); "
                    f"it needs {PROVIDER_NEEDS.get(provider, 'its libraries')}"
                )
        self.providers = active
        self.inputs = [_ort_info(i) for i in self.session.get_inputs()]
        self.outputs = [_ort_info(o) for o in self.session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """One input batch -> all outputs (onnxruntime sessions are safe to share across threads)."""
        batch = _check_batch(batch, self.inputs[0], self.path)
        try:
            return self.session.run(self._output_names, {self.inputs[0].name: batch})
        except Exception as exc:  # onnxruntime's own exception types (e.g. a fixed batch size)
            raise EdgeCNNError(f"{self.path.name} failed on an input of shape {batch.shape}: {_first_line(exc)}") from None


class TFLiteBackend:
    """A LiteRT interpreter; the batch dimension is resized on demand. Calls are serialised by a lock."""

    providers = ["LiteRT CPU"]

    def __init__(self, path: str | Path, threads: int | None = None, **_ignored: Any):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        unknown = {k: v for k, v in _ignored.items() if v not in (None, (), ("cpu",), ["cpu"], "all", {})}
        if unknown:
            raise EdgeCNNError(f"LiteRT runs on the CPU only; options {sorted(unknown)} apply to ONNX models")
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for bad files
            raise ModelFileError(f"{self.path} cannot be loaded by LiteRT ({_first_line(exc)}): re-export it") from None
        self._lock = threading.Lock()
        self._batch = None
        self._refresh_details()

    def _refresh_details(self) -> None:
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self.inputs = [_tflite_info(d) for d in self._in]
        self.outputs = [_tflite_info(d) for d in self._out]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = _check_batch(batch, self.inputs[0], self.path)
        with self._lock:
            try:
                if batch.shape[0] != self._batch:
                    self.interpreter.resize_tensor_input(self._in[0]["index"], list(batch.shape), strict=False)
                    self.interpreter.allocate_tensors()
                    self._batch = batch.shape[0]
                    self._in = self.interpreter.get_input_details()
                    self._out = self.interpreter.get_output_details()
                self.interpreter.set_tensor(self._in[0]["index"], batch)
                self.interpreter.invoke()
            except (ValueError, RuntimeError) as exc:
                self._batch = None  # reallocate on the next call
                raise EdgeCNNError(f"{self.path.name} failed on an input of shape {batch.shape}: {_first_line(exc)}") from None
            return [self.interpreter.get_tensor(d["index"]).copy() for d in self._out]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


def _ort_info(node) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorInfo(node.name, shape, _ORT_TYPES.get(node.type, node.type))


# The wrapper of each embedded runtime of the format table.
RUNTIMES = {"onnxruntime": OnnxBackend, "litert": TFLiteBackend}


def _tflite_info(detail: dict[str, Any]) -> TensorInfo:
    signature = detail.get("shape_signature")
    shape = tuple(int(d) for d in (signature if signature is not None and len(signature) else detail["shape"]))
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    quant = (float(scale), int(zero_point)) if dtype in ("int8", "uint8") and scale else None
    return TensorInfo(detail["name"], shape, dtype, quant)


def shapes_fit(a: Sequence[int], b: Sequence[int]) -> bool:
    """Equal shapes, where -1 or None (a dynamic dimension) fits anything."""
    return len(a) == len(b) and all(x == y or x in (-1, None) or y in (-1, None) for x, y in zip(a, b))


def match_outputs(declared: Sequence[Any], actual: list[TensorInfo], path: Path) -> list[int]:
    """Position in the file's outputs of each declared output (anything with ``name`` and ``shape``):
    by name, else by shape where every shape fits exactly one output, else by position.

    TFLite names its outputs ``StatefulPartitionedCall:N`` in its own order, so export (matching the
    Keras outputs) and the runtime (matching the manifest) both need the shape step."""
    names = [info.name for info in actual]
    by_shape = [[i for i, info in enumerate(actual) if shapes_fit(spec.shape, info.shape)] for spec in declared]
    if all(spec.name in names for spec in declared):
        order = [names.index(spec.name) for spec in declared]
    elif all(len(fits) == 1 for fits in by_shape) and len({fits[0] for fits in by_shape}) == len(declared):
        order = [fits[0] for fits in by_shape]
    elif len(declared) == len(actual):
        order = list(range(len(declared)))
    else:
        raise ManifestError(f"{path} has outputs {names} but its manifest lists {[s.name for s in declared]}: re-export")
    for spec, position in zip(declared, order):
        if not shapes_fit(spec.shape, actual[position].shape):
            raise ManifestError(
                f"{path} output {names[position]!r} has shape {list(actual[position].shape)} but its manifest says "
                f"{spec.shape}: re-export the model"
            )
    return order
