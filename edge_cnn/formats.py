"""The format table: every deployable file format, defined once (Ultralytics' ``export_formats()``).

Export plans its jobs and writes each artifact through it, the manifest validates against it,
the runtime, bench and parity open files with the runtime it names, and every CLI choice list
reads it. Adding a format is one ``register_format`` call: its writer and compact pass are
``"module:function"`` references, imported only when an export uses them, so this module stays
pure Python below every stage (the embedded runtime reads it without TensorFlow).
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable

from edge_cnn.errors import EdgeCNNError

# What runs a format, and on which execution providers. The embedded runtimes need no TensorFlow.
RUNTIME_PROVIDERS = {"onnxruntime": ("cpu", "cuda", "tensorrt"), "litert": ("cpu",), "tensorflow": ("cpu",)}
EMBEDDED_RUNTIMES = ("onnxruntime", "litert")


@dataclasses.dataclass(frozen=True)
class Format:
    """One format: how its artifacts are named, which precisions export writes, what runs them."""

    name: str
    suffix: str  # appended to the artifact's stem: ".tflite" (a file) or "_savedmodel" (a folder)
    precisions: tuple[str, ...]  # what export can write, in the order it writes them
    runtime: str  # a key of RUNTIME_PROVIDERS
    writer: str | Callable[..., None]  # (export context, job, temporary path) -> None
    compact: str | Callable[[Path], None] | None = None  # shortens internal names in place; None: nothing to do
    description: str = ""

    @property
    def providers(self) -> tuple[str, ...]:
        return RUNTIME_PROVIDERS[self.runtime]

    @property
    def embedded(self) -> bool:
        """Runs without TensorFlow (the runtime, predict, detect and face can use it)."""
        return self.runtime in EMBEDDED_RUNTIMES

    @property
    def is_file(self) -> bool:
        return self.suffix.startswith(".")

    def write(self, context: Any, job: Any, path: Path) -> None:
        resolve(self.writer)(context, job, path)

    def compact_file(self, path: Path) -> None:
        if self.compact is not None:
            resolve(self.compact)(path)


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> Format:
    """Add ``fmt`` to the table (a name or file suffix used twice is a programming error)."""
    if fmt.name in _FORMATS:
        raise RuntimeError(f"format {fmt.name!r} is registered twice")
    if fmt.runtime not in RUNTIME_PROVIDERS:
        raise RuntimeError(f"format {fmt.name!r}: runtime {fmt.runtime!r} is not one of {list(RUNTIME_PROVIDERS)}")
    if fmt.is_file and any(other.suffix == fmt.suffix for other in _FORMATS.values()):
        raise RuntimeError(f"format {fmt.name!r}: suffix {fmt.suffix!r} is taken")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister_format(name: str) -> None:
    """Remove a format (tests that register their own)."""
    _FORMATS.pop(name, None)


def format_names() -> tuple[str, ...]:
    return tuple(_FORMATS)


def embedded_formats() -> tuple[str, ...]:
    """The formats the TF-free runtime runs (``--backend`` choices of predict, detect and face)."""
    return tuple(name for name, fmt in _FORMATS.items() if fmt.embedded)


def all_precisions() -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for fmt in _FORMATS.values():
        seen.update(dict.fromkeys(fmt.precisions))
    return tuple(seen)


def get_format(name: str) -> Format:
    if name not in _FORMATS:
        raise EdgeCNNError(f"format {name!r} is unknown: use one of {', '.join(_FORMATS)}")
    return _FORMATS[name]


def format_of_file(path: str | Path) -> Format | None:
    """The file format whose suffix ``path`` ends with, or None."""
    suffix = Path(path).suffix.lower()
    return next((fmt for fmt in _FORMATS.values() if fmt.is_file and fmt.suffix == suffix), None)


def export_formats() -> list[dict[str, Any]]:
    """The table as rows (name, suffix, precisions, runtime, providers, description) for README and --help."""
    return [
        {"format": f.name, "suffix": f.suffix, "precisions": ", ".join(f.precisions), "runtime": f.runtime,
         "providers": ", ".join(f.providers), "description": f.description}
        for f in _FORMATS.values()
    ]


def resolve(reference: str | Callable) -> Callable:
    """A callable, or a ``"module:function"`` reference imported now."""
    if callable(reference):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


register_format(Format(
    "tflite", ".tflite", ("fp32", "fp16", "dynamic", "int8"), "litert",
    writer="edge_cnn.export.tflite:write_tflite", compact="edge_cnn.export.compact:compact_tflite_file",
    description="TFLite flatbuffer (LiteRT): fp16, dynamic-range and full-integer int8",
))
register_format(Format(
    "onnx", ".onnx", ("fp32", "int8"), "onnxruntime",
    writer="edge_cnn.export.onnx:write_onnx", compact="edge_cnn.export.compact:compact_onnx_file",
    description="ONNX (tf2onnx), int8 as QDQ: ONNX Runtime on CPU, CUDA or TensorRT",
))
register_format(Format(
    "saved_model", "_savedmodel", ("fp32",), "tensorflow",
    writer="edge_cnn.export.saved_model:write_saved_model",
    description="TensorFlow SavedModel folder (TF Serving, TF.js and TFLite converters)",
))
