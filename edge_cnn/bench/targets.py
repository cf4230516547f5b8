"""What to benchmark: model files, or export folders whose manifest lists every artifact.

An export folder expands to each ONNX/TFLite artifact, preceded by the Keras model it
came from (``../model.keras``, the run directory's model) as the baseline when it is
there and TensorFlow is installed. Every artifact is checked against its manifest (size
and sha256) before anything is timed, as the runtime does: a folder whose files and
manifest disagree (an edited file, a half-finished re-export) is refused as a whole.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Sequence

from edge_cnn.errors import EdgeCNNError, ManifestError, ModelFileError
from edge_cnn.formats import embedded_formats, format_of_file, get_format
from edge_cnn.manifest import MANIFEST_NAME, TensorSpec, load_manifest
from edge_cnn.preprocess import PreprocessSpec

KERAS_SUFFIX = ".keras"  # the baseline: the Keras model the artifacts came from


def _kind_of_file(path: Path) -> str | None:
    """An embedded format's name, "keras" for the baseline, or None."""
    if path.suffix.lower() == KERAS_SUFFIX:
        return "keras"
    fmt = format_of_file(path)
    return fmt.name if fmt is not None and fmt.embedded else None


@dataclasses.dataclass
class Target:
    label: str
    path: Path
    format: str  # an embedded format of the table, or keras (the baseline)
    precision: str | None = None
    preprocess: PreprocessSpec | None = None
    inputs: list[TensorSpec] | None = None  # the manifest's view (quantization of int8 ONNX inputs)
    note: str | None = None
    labels: list[str] | None = None  # the manifest's class names (bench --data's accuracy)


def expand_targets(paths: Sequence[str | Path], keras: bool = True) -> list[Target]:
    """Targets in the order given; a missing path or an unknown kind of file is an error up front."""
    if not paths:
        raise EdgeCNNError("nothing to benchmark: pass .onnx/.tflite files or an export folder")
    targets: list[Target] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            targets += _manifest_targets(path, keras)
        elif not path.exists():
            raise ModelFileError(f"model file {path} does not exist: pass a {_suffixes('/')} file or an export folder")
        elif _kind_of_file(path) is not None:
            targets.append(_file_target(path))
        else:
            raise ModelFileError(f"{path} is neither {_suffixes(', ')} nor .keras: pass a model file or its export folder")
    return targets


def _manifest_targets(folder: Path, keras: bool) -> list[Target]:
    manifest = load_manifest(folder)
    targets = []
    source = Path(os.path.normpath(folder / ".." / "model.keras"))
    if keras and source.is_file() and importlib.util.find_spec("tensorflow") is not None:
        targets.append(dataclasses.replace(_keras_target(source, manifest.preprocess, manifest.source_sha256),
                                           labels=list(manifest.labels)))
    for artifact in manifest.artifacts:
        if not get_format(artifact.format).embedded:
            continue  # SavedModel folders are TensorFlow's; the Keras baseline covers them
        targets.append(
            Target(
                label=str(folder / artifact.path),
                path=manifest.verified_path(artifact),
                format=artifact.format,
                precision=artifact.precision,
                preprocess=manifest.preprocess,
                inputs=artifact.inputs,
                note=None if artifact.status == "OK" else f"export parity verdict {artifact.status}",
                labels=list(manifest.labels),
            )
        )
    return targets


def _keras_target(path: Path, spec: PreprocessSpec | None, source_sha256: str | None = None) -> Target:
    note = None
    if source_sha256:
        from edge_cnn.io import sha256_file

        if sha256_file(path) != source_sha256:
            note = f"{path} differs from the model the artifacts were exported from (sha256)"
    return Target(label=str(path), path=path, format="keras", precision="fp32", preprocess=spec, note=note)


def _file_target(path: Path) -> Target:
    """A lone file; a manifest beside it that lists it supplies precision and preprocessing."""
    kind = _kind_of_file(path)
    if kind == "keras":
        preprocess_file = path.parent / "preprocess.json"
        spec = PreprocessSpec.load(preprocess_file) if preprocess_file.is_file() else None
        return _keras_target(path, spec)
    target = Target(label=str(path), path=path, format=kind)
    if (path.parent / MANIFEST_NAME).is_file():
        try:
            manifest = load_manifest(path.parent)
        except ManifestError:
            return target
        for artifact in manifest.artifacts:
            if manifest.artifact_path(artifact).resolve() == path.resolve():
                manifest.verified_path(artifact)
                target.precision = artifact.precision
                target.preprocess = manifest.preprocess
                target.inputs = artifact.inputs
    return target


def match_baseline(targets: Sequence[Target], baseline: str | None) -> str | None:
    """The label of the entry speedups are relative to: the first, or the one ``baseline`` names
    (its path, file name, format such as 'keras', or format-precision such as 'tflite-int8')."""
    if not targets:
        return None
    if baseline is None:
        return targets[0].label
    for target in targets:
        names = {target.label, target.path.name, str(target.path), target.format, f"{target.format}-{target.precision}"}
        if baseline in names:
            return target.label
    choices = ", ".join(t.path.name for t in targets)
    raise EdgeCNNError(f"--baseline {baseline!r} matches no benchmarked model; use one of: {choices}")


def _suffixes(joiner: str) -> str:
    return joiner.join(get_format(name).suffix for name in embedded_formats())
