"""``manifest.json``: what export wrote, the contract read by bench and the runtime.

Schema 1, validated on read. Paths of artifacts are relative to the manifest's folder.
Pure Python: the embedded runtime reads it without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from edge_cnn.errors import ManifestError
from edge_cnn.preprocess import PreprocessSpec

SCHEMA = 1
MANIFEST_NAME = "manifest.json"
FORMATS = ("tflite", "onnx", "saved_model")
PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")
MEANINGS = ("probabilities", "logits", "embedding")
STATUSES = ("OK", "WARN", "FAILED")


@dataclasses.dataclass
class Quantization:
    """Affine int8/uint8 quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclasses.dataclass
class TensorSpec:
    name: str
    shape: list[int]  # -1 for a dynamic dimension (batch)
    dtype: str
    layout: str | None = None  # inputs: NHWC or NCHW
    meaning: str | None = None  # outputs: probabilities, logits or embedding
    quantization: Quantization | None = None


@dataclasses.dataclass
class Artifact:
    path: str
    format: str
    precision: str
    sha256: str
    bytes: int
    gzip_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    status: str = "OK"  # parity verdict: OK, WARN or FAILED
    optimization: dict[str, Any] = dataclasses.field(default_factory=dict)  # qat / prune / cluster facts
    parity: dict[str, Any] = dataclasses.field(default_factory=dict)  # accuracy, agreement, max diff


@dataclasses.dataclass
class Manifest:
    labels: list[str]
    preprocess: PreprocessSpec
    source_sha256: str
    artifacts: list[Artifact]
    created_by: str = ""
    schema: int = SCHEMA
    root: Path | None = dataclasses.field(default=None, compare=False)  # folder of the manifest file

    def artifact_path(self, artifact: Artifact) -> Path:
        return (self.root or Path(".")) / artifact.path

    def find(self, format: str | None = None, precision: str | None = None) -> list[Artifact]:
        return [
            a
            for a in self.artifacts
            if (format is None or a.format == format) and (precision is None or a.precision == precision)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "created_by": self.created_by,
            "source_sha256": self.source_sha256,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "artifacts": [dataclasses.asdict(a) for a in self.artifacts],
        }

    def save(self, folder: str | os.PathLike) -> Path:
        from edge_cnn.io import write_json

        return write_json(Path(folder) / MANIFEST_NAME, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, root: Path | None = None) -> "Manifest":
        where = f"manifest {root / MANIFEST_NAME}" if root else "manifest"
        if not isinstance(data, dict):
            raise ManifestError(f"{where} must be a JSON object")
        if data.get("schema") != SCHEMA:
            raise ManifestError(f"{where} has schema {data.get('schema')!r}; this edgecnn reads schema {SCHEMA}: re-export")
        for key in ("labels", "preprocess", "source_sha256", "artifacts"):
            if key not in data:
                raise ManifestError(f"{where} lacks {key!r}: re-export the model")
        try:
            artifacts = [_artifact(a) for a in data["artifacts"]]
            preprocess = PreprocessSpec.from_dict(data["preprocess"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ManifestError(f"{where} is invalid: {exc}") from None
        return cls(
            labels=[str(label) for label in data["labels"]],
            preprocess=preprocess,
            source_sha256=str(data["source_sha256"]),
            artifacts=artifacts,
            created_by=str(data.get("created_by", "")),
            root=root,
        )


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {list(allowed)}")
    return value


def _tensor(data: dict[str, Any], kind: str) -> TensorSpec:
    quant = data.get("quantization")
    spec = TensorSpec(
        name=str(data["name"]),
        shape=[int(d) for d in data["shape"]],
        dtype=_choice(data["dtype"], DTYPES, f"{kind} dtype"),
        layout=data.get("layout"),
        meaning=data.get("meaning"),
        quantization=Quantization(float(quant["scale"]), int(quant["zero_point"])) if quant else None,
    )
    if spec.meaning is not None:
        _choice(spec.meaning, MEANINGS, f"{kind} meaning")
    if spec.dtype in ("int8", "uint8") and kind == "input" and spec.quantization is None:
        raise ValueError(f"{kind} {spec.name!r} is {spec.dtype} but has no quantization parameters")
    return spec


def _artifact(data: dict[str, Any]) -> Artifact:
    inputs = [_tensor(t, "input") for t in data["inputs"]]
    outputs = [_tensor(t, "output") for t in data["outputs"]]
    if not inputs or not outputs:
        raise ValueError(f"artifact {data.get('path')!r} needs at least one input and one output")
    return Artifact(
        path=str(data["path"]),
        format=_choice(data["format"], FORMATS, "format"),
        precision=_choice(data["precision"], PRECISIONS, "precision"),
        sha256=str(data["sha256"]),
        bytes=int(data["bytes"]),
        gzip_bytes=int(data["gzip_bytes"]),
        inputs=inputs,
        outputs=outputs,
        status=_choice(data.get("status", "OK"), STATUSES, "status"),
        optimization=dict(data.get("optimization", {})),
        parity=dict(data.get("parity", {})),
    )


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest from its file or its export folder."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise ManifestError(f"no manifest at {file}: run `edgecnn export` first, or pass the export folder")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {file} is not valid JSON ({exc}): re-export the model") from None
    return Manifest.from_dict(data, root=file.parent)
