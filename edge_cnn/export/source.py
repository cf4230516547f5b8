"""What export starts from: a run directory, or a bare ``.keras`` file with its preprocess.json.

Everything downstream (calibration, fine-tuning, parity) takes its images from here and
turns them into model inputs with the run's ``PreprocessSpec`` only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import sha256_file
from edge_cnn.keras_file import load_keras_model
from edge_cnn.preprocess import PreprocessSpec, find_images
from edge_cnn.run_dir import RunDir
from edge_cnn.tasks import DEFAULT_TASK, get_task

Items = list[tuple[str, int]]  # (image path, class index); class -1 when unknown


@dataclasses.dataclass
class ExportSource:
    model_path: Path
    model: object  # a tf_keras Model
    spec: PreprocessSpec
    labels: list[str]
    train: Items  # labelled fine-tuning images (empty when there are none)
    calibration: Items  # int8 calibration images: --calib-data if given, else the training split
    test: Items  # parity images; labels are -1 for an unlabelled --calib-data folder
    trained: bool  # fitted at least once (fake-quant ranges and BN statistics are meaningful)
    sha256: str
    out_dir: Path
    task: str = DEFAULT_TASK  # the run's task (a bare .keras file: the default)
    test_origin: str = "test split"  # where the parity images come from, for the report
    truths: dict[str, Any] = dataclasses.field(default_factory=dict)  # a box-annotated run's ground truth by path
    val: Items = dataclasses.field(default_factory=list)  # the run's validation split (NetAdapt scores on it)
    augment: Any = None  # the run's per-image augmentation (an AugmentConfig), which channel pruning fine-tunes with

    @property
    def test_labelled(self) -> bool:
        return bool(self.test) and all(label >= 0 or path in self.truths for path, label in self.test)

    def load(self, items: Items) -> tuple[np.ndarray, Any]:
        """Images -> (float32 batch in the model's layout, their truth: class indices, or for a box-annotated
        run each image's boxes as the task scores them), through the run's spec only."""
        if not items:
            return np.zeros((0, *self.spec.input_shape), np.float32), np.zeros((0,), np.int64)
        batch = get_task(self.task).model_inputs(self.spec, [path for path, _ in items])
        if self.truths and all(path in self.truths for path, _ in items):
            return batch, [self.truths[path] for path, _ in items]
        return batch, np.array([label for _, label in items], np.int64)


def load_source(
    source: str | os.PathLike,
    out: str | os.PathLike | None = None,
    preprocess: str | os.PathLike | None = None,
    labels: str | os.PathLike | None = None,
    calib_data: str | os.PathLike | None = None,
) -> ExportSource:
    """Resolve a run directory or a bare .keras file into model, spec, labels and image lists."""
    path = Path(source)
    if not path.exists():
        raise EdgeCNNError(
            f"export source {path} does not exist: pass a run directory of `edgecnn train` or a .keras file"
        )
    found = _from_run_dir(path, preprocess, labels) if path.is_dir() else _from_model_file(path, preprocess, labels)
    model_path, spec, label_names, train, test, trained_hint, default_out = found
    calibration = list_images(calib_data) if calib_data else train
    task = RunDir(path).task() if path.is_dir() else DEFAULT_TASK
    model = load_keras_model(model_path, compile=True)  # compiled: its optimizer tells whether it was fitted
    _check_input(model, spec, model_path)
    classes = get_task(task).classes_in_output(model.outputs[0].shape)
    label_names = label_names or [f"class{i}" for i in range(classes)]
    if classes and len(label_names) != classes:  # 0: the output is no class scores (an embedding)
        raise EdgeCNNError(f"{len(label_names)} labels for a model with {classes} outputs: fix labels.json / --labels")
    return ExportSource(
        model_path=model_path,
        model=model,
        spec=spec,
        labels=label_names,
        train=train,
        calibration=calibration,
        test=test or (calibration if calib_data else []),
        test_origin="test split" if test else "--calib-data images",
        trained=trained_hint or _was_fitted(model),
        sha256=sha256_file(model_path),
        out_dir=Path(out) if out else default_out,
        task=task,
        truths=_truths(RunDir(path), task) if path.is_dir() else {},
        val=_read_split(RunDir(path), "val") if path.is_dir() else [],
        augment=_augmentation(RunDir(path), task) if path.is_dir() else None,
    )


def _augmentation(run: RunDir, task: str):
    """The per-image augmentation a class-folder run trained with (mixup and cutmix left out: they mix labels),
    or None: a run without config.yaml or without augmentation, and box or identity runs, whose augmentation
    moves boxes or pairs images and which export does not fine-tune. Settings this version does not know
    (a run trained by another one) are ignored: every export reads this, pruning or not."""
    if get_task(task).data_kind != "folder" or not run.config_path.is_file():
        return None
    from edge_cnn.data import AugmentConfig
    from edge_cnn.recipes import load_recipe
    from edge_cnn.train.config import TrainConfig

    values = TrainConfig.from_dict(load_recipe(run.config_path), ignore_unknown=True).augment_values()
    augment = AugmentConfig.from_dict({**values, "mixup": 0.0, "cutmix": 0.0})
    return augment if augment.changes_pixels else None


def _truths(run: RunDir, task: str) -> dict[str, Any]:
    """A box-annotated run's ground truth per image (its boxes.json), which the task scores parity with."""
    if get_task(task).data_kind != "boxes":
        return {}
    from edge_cnn.train.box_route import input_truths

    return input_truths(run)


def _from_run_dir(path: Path, preprocess, labels):
    run = RunDir(path).require("model", "labels", "preprocess")
    spec = PreprocessSpec.load(preprocess) if preprocess else run.preprocess()
    label_names = _read_labels(labels) if labels else run.labels()
    train, test = _read_split(run, "train"), _read_split(run, "test")
    return run.model_path, spec, label_names, train, test, run.metrics_path.is_file(), run.export_dir


def _from_model_file(path: Path, preprocess, labels):
    if path.suffix.lower() != ".keras":
        raise EdgeCNNError(f"export source {path} is neither a run directory nor a .keras file")
    if preprocess is None:
        raise EdgeCNNError(
            f"a bare model ({path.name}) needs --preprocess preprocess.json: the input size and normalization "
            "it was trained with"
        )
    spec = PreprocessSpec.load(preprocess)
    label_names = _read_labels(labels) if labels else None
    return path, spec, label_names, [], [], False, path.with_name(f"{path.stem}_export")


def calibration_items(items: Items, count: int) -> Items:
    """The first ``count`` of ``items`` in a fixed shuffled order (both classes, reproducible)."""
    order = np.random.default_rng(0).permutation(len(items))[: int(count)]
    return [items[i] for i in order]


def list_images(folder: str | os.PathLike) -> Items:
    """Every image under ``folder`` (sorted), unlabelled."""
    return [(str(p.resolve()), -1) for p in find_images(folder, "--calib-data")]


def _read_split(run: RunDir, split: str) -> Items:
    return run.read_split(split) if run.split_path(split).is_file() else []


def _read_labels(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgeCNNError(
            f"labels file {path} cannot be read as JSON ({exc}): pass a JSON list of class names"
        ) from None
    if not isinstance(data, list) or not data:
        raise EdgeCNNError(f"labels file {path} must hold a non-empty JSON list of class names")
    return [str(label) for label in data]


def _check_input(model, spec: PreprocessSpec, path: Path) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgeCNNError(
            f"{path.name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; export takes one of each"
        )
    expected = tuple(model.inputs[0].shape[1:])
    if any(e is not None and e != s for e, s in zip(expected, spec.input_shape)) or len(expected) != 3:
        raise EdgeCNNError(
            f"{path.name} takes inputs of shape {expected} but the preprocess spec gives {spec.input_shape}: "
            "pass the preprocess.json the model was trained with"
        )


def _was_fitted(model) -> bool:
    """A model saved after ``fit`` carries its optimizer with a non-zero step counter."""
    optimizer = getattr(model, "optimizer", None)
    iterations = getattr(optimizer, "iterations", None)
    try:
        return iterations is not None and int(iterations.numpy()) > 0
    except (AttributeError, TypeError, ValueError):
        return False


def ends_in_softmax(model) -> bool:
    """True when the model outputs probabilities (the trainer's softmax head), False for logits."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return type(last).__name__ == "Softmax" or getattr(activation, "__name__", "") == "softmax"
