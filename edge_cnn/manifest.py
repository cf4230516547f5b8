"""``manifest.json``: what export wrote, the contract read by bench and the runtime.

Schema 1, validated on read: every field is type-checked, so a hand-edited or hostile
manifest is one ``ManifestError``, never a traceback. Paths of artifacts are relative to the
manifest's folder and must stay inside it (``..``, absolute paths and links that lead out are
refused without touching the file they name). A reader uses an artifact only after
``verified_path`` has matched its size and sha256. Pure Python: the embedded runtime reads it
without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from edge_cnn.errors import ManifestError, ModelFileError
from edge_cnn.formats import all_precisions, format_names
from edge_cnn.io import sha256_file
from edge_cnn.preprocess import PreprocessSpec
from edge_cnn.tasks import DEFAULT_TASK, task_names

SCHEMA = 1
MANIFEST_NAME = "manifest.json"
DTYPES = ("float32", "float16", "int8", "uint8", "int32", "int64")
MEANINGS = ("probabilities", "logits", "embedding", "box_map")
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
    meaning: str | None = None  # outputs: probabilities, logits, embedding or box_map (a detection map)
    quantization: Quantization | None = None


@dataclasses.dataclass
class Verification:
    """What ``edgecnn evaluate --protocol lfw`` measured for an embedding artifact, so that ``edgecnn face
    verify`` decides with a threshold measured on a public protocol, not a guess: declare "same person" when
    the cosine is >= ``threshold`` (the accuracy-maximising threshold over all the protocol's pairs); the
    accuracy is the protocol's cross-validated one (thresholds chosen on the other folds)."""

    protocol: str  # "lfw": LFW View 2, 10 folds
    threshold: float
    mean_accuracy: float
    std_accuracy: float
    pairs: int
    flip: bool = False  # measured on flip-test embeddings (each face plus its mirror): embed() then does the same


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
    verification: Verification | None = None  # embedding artifacts measured by `evaluate --protocol lfw`


@dataclasses.dataclass
class Manifest:
    labels: list[str]
    preprocess: PreprocessSpec
    source_sha256: str
    artifacts: list[Artifact]
    created_by: str = ""
    task: str = DEFAULT_TASK  # a name of the task table (edge_cnn.tasks): how the runtime reads the outputs
    decoding: dict[str, Any] = dataclasses.field(default_factory=dict)  # the task's (detect: stride, box scale, ...)
    macs: int | None = None  # multiply-accumulates of one forward pass (zoo.profile): the runtime's default rule reads it
    schema: int = SCHEMA
    root: Path | None = dataclasses.field(default=None, compare=False)  # folder of the manifest file

    def artifact_path(self, artifact: Artifact) -> Path:
        """Where the artifact lies; a path that resolves outside the manifest's folder is refused."""
        root = self.root or Path(".")
        path = root / artifact.path
        if not path.resolve().is_relative_to(root.resolve()):
            raise ManifestError(
                f"manifest {root / MANIFEST_NAME} lists {artifact.path!r}, which leads outside its folder: "
                "artifacts must lie in the export folder; re-export the model"
            )
        return path

    def verified_path(self, artifact: Artifact) -> Path:
        """The artifact's file, after checking it has the manifest's size and sha256.

        A file edited, truncated or left over from another export would give silently wrong
        outputs, so bench and the runtime refuse it before running it.
        """
        path = self.artifact_path(artifact)
        if not path.exists():
            raise ModelFileError(f"model file {path} listed in the manifest does not exist: re-export, or copy the whole export folder")
        if not path.is_file():  # a SavedModel folder: its digest covers every file (export's _measure)
            return path
        size = path.stat().st_size
        if size != artifact.bytes:
            raise ManifestError(
                f"model file {path} has {size} bytes but its manifest says {artifact.bytes}: the file is truncated "
                "or was replaced after export; re-export the model"
            )
        digest = sha256_file(path)
        if digest != artifact.sha256:
            raise ManifestError(
                f"model file {path} does not match its manifest (sha256 {digest[:12]}... != {artifact.sha256[:12]}...): "
                "it was changed after export; re-export the model"
            )
        return path

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
            "task": self.task,
            "source_sha256": self.source_sha256,
            "labels": list(self.labels),
            "preprocess": self.preprocess.to_dict(),
            "artifacts": [dataclasses.asdict(a) for a in self.artifacts],
            **({"decoding": dict(self.decoding)} if self.decoding else {}),
            **({"macs": self.macs} if self.macs is not None else {}),
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
            labels = _list(data["labels"], "labels")
            if not labels or not all(isinstance(label, str) for label in labels):
                raise ValueError("labels must be a non-empty list of class names")
            artifacts = [_artifact(_object(a, "artifact")) for a in _list(data["artifacts"], "artifacts")]
            preprocess = PreprocessSpec.from_dict(_object(data["preprocess"], "preprocess"))
            source_sha256 = _string(data["source_sha256"], "source_sha256")
            created_by = _string(data.get("created_by", ""), "created_by")
            task = _choice(data.get("task", DEFAULT_TASK), task_names(), "task")
            decoding = _decoding(data.get("decoding", {}))
            macs = None if data.get("macs") is None else _integer(data["macs"], "macs", 0)
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            detail = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ManifestError(f"{where} is invalid ({detail}): re-export the model") from None
        return cls(labels, preprocess, source_sha256, artifacts, created_by=created_by, task=task, decoding=decoding,
                   macs=macs, root=root)


def _decoding(value: Any) -> dict[str, Any]:
    """The task's decoding record: an object; a ``stride`` is a positive whole number, thresholds lie in [0, 1]."""
    decoding = _object(value, "decoding")
    if "stride" in decoding:
        _integer(decoding["stride"], "decoding stride", 1)
    for key in ("score_threshold", "nms_iou"):
        if key in decoding and not 0.0 <= _number(decoding[key], f"decoding {key}") <= 1.0:
            raise ValueError(f"decoding {key} {decoding[key]!r} must lie in [0, 1]")
    return decoding


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {list(allowed)}")
    return value


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a JSON list, not {type(value).__name__}")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _integer(value: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        raise ValueError(f"{what} {value!r} must be a whole number" + (f" of at least {minimum}" if minimum is not None else ""))
    return value


def _boolean(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} {value!r} must be true or false")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} {value!r} must be a number")
    return float(value)


def _relative_path(value: Any) -> str:
    """An artifact path as written by export: relative, inside the folder, no '..' part."""
    text = _string(value, "artifact path")
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if not text or PureWindowsPath(text).is_absolute() or text.startswith(("/", "\\")) or ".." in parts:
        raise ValueError(f"artifact path {text!r} must be relative to the export folder, without '..'")
    return text


def _tensor(data: dict[str, Any], kind: str) -> TensorSpec:
    data = _object(data, kind)
    quant = data.get("quantization")
    if quant is not None:
        quant = _object(quant, f"{kind} quantization")
    layout, meaning = data.get("layout"), data.get("meaning")
    spec = TensorSpec(
        name=_string(data["name"], f"{kind} name"),
        shape=[_integer(d, f"{kind} dimension", -1) for d in _list(data["shape"], f"{kind} shape")],
        dtype=_choice(data["dtype"], DTYPES, f"{kind} dtype"),
        layout=None if layout is None else _string(layout, f"{kind} layout"),
        meaning=None if meaning is None else _string(meaning, f"{kind} meaning"),
        quantization=None if quant is None else Quantization(
            _number(quant["scale"], "quantization scale"), _integer(quant["zero_point"], "quantization zero point")
        ),
    )
    if spec.meaning is not None:
        _choice(spec.meaning, MEANINGS, f"{kind} meaning")
    if spec.dtype in ("int8", "uint8") and kind == "input" and spec.quantization is None:
        raise ValueError(f"{kind} {spec.name!r} is {spec.dtype} but has no quantization parameters")
    return spec


def _artifact(data: dict[str, Any]) -> Artifact:
    inputs = [_tensor(t, "input") for t in _list(data["inputs"], "inputs")]
    outputs = [_tensor(t, "output") for t in _list(data["outputs"], "outputs")]
    if not inputs or not outputs:
        raise ValueError(f"artifact {data.get('path')!r} needs at least one input and one output")
    sha256 = _string(data["sha256"], "sha256")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 {sha256[:80]!r} is not 64 hexadecimal digits")
    return Artifact(
        path=_relative_path(data["path"]),
        format=_choice(data["format"], format_names(), "format"),
        precision=_choice(data["precision"], all_precisions(), "precision"),
        sha256=sha256,
        bytes=_integer(data["bytes"], "bytes", 0),
        gzip_bytes=_integer(data["gzip_bytes"], "gzip_bytes", 0),
        inputs=inputs,
        outputs=outputs,
        status=_choice(data.get("status", "OK"), STATUSES, "status"),
        optimization=_object(data.get("optimization", {}), "optimization"),
        parity=_object(data.get("parity", {}), "parity"),
        verification=_verification(data.get("verification")),
    )


def _verification(value: Any) -> Verification | None:
    if value is None:
        return None
    data = _object(value, "verification")
    threshold = _number(data["threshold"], "verification threshold")
    if not -2.0 <= threshold <= 2.0:  # a cosine threshold; the protocol's extremes are lowest - 1 and highest + 1
        raise ValueError(f"verification threshold {threshold} is not a cosine threshold in [-2, 2]")
    return Verification(
        protocol=_string(data["protocol"], "verification protocol"),
        threshold=threshold,
        mean_accuracy=_number(data["mean_accuracy"], "verification mean_accuracy"),
        std_accuracy=_number(data["std_accuracy"], "verification std_accuracy"),
        pairs=_integer(data["pairs"], "verification pairs", 1),
        flip=_boolean(data.get("flip", False), "verification flip"),
    )


def load_manifest(path: str | os.PathLike) -> Manifest:
    """Read and validate a manifest from its file or its export folder."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise ManifestError(f"no manifest at {file}: run `edgecnn export` first, or pass the export folder")
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"manifest {file} is not valid JSON ({exc}): re-export the model") from None
    return Manifest.from_dict(data, root=file.parent)


def source_kind(source: Path) -> str:
    """'run' (a run directory: model.keras) or 'export' (a folder with manifest.json)."""
    if (source / "model.keras").is_file():
        return "run"
    if (source / MANIFEST_NAME).is_file():
        return "export"
    raise ManifestError(f"{source} is neither a run directory (model.keras) nor an export folder (manifest.json): "
                       "pass RUN for the Keras model or RUN/export for its exported artifacts")
