"""The run directory: what training writes and export, bench, explain and evaluate read.

Layout (documented in README.md)::

    model.keras  labels.json  preprocess.json  config.yaml  metrics.json  history.csv
    data_report.json  curves.png  confusion.png  splits/{train,val,test}.csv  checkpoints/  export/

Pure Python (no TensorFlow): loading ``model.keras`` is the caller's job.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import write_json, write_text
from edge_cnn.preprocess import PreprocessSpec

SPLITS = ("train", "val", "test")


class RunDir:
    """Paths and readers of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    model_path = property(lambda self: self.path / "model.keras")
    labels_path = property(lambda self: self.path / "labels.json")
    preprocess_path = property(lambda self: self.path / "preprocess.json")
    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.json")
    history_path = property(lambda self: self.path / "history.csv")
    data_report_path = property(lambda self: self.path / "data_report.json")
    splits_dir = property(lambda self: self.path / "splits")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    export_dir = property(lambda self: self.path / "export")

    def split_path(self, split: str) -> Path:
        return self.splits_dir / f"{split}.csv"

    def require(self, *names: str) -> "RunDir":
        """Fail clearly if the folder or one of ``names`` ('model', 'labels', 'preprocess') is missing."""
        if not self.path.is_dir():
            raise EdgeCNNError(f"run directory {self.path} does not exist: pass the --out folder of `edgecnn train`")
        for name in names:
            file = getattr(self, f"{name}_path")
            if not file.is_file():
                raise EdgeCNNError(f"run directory {self.path} has no {file.name}: it is not a finished training run")
        return self

    def labels(self) -> list[str]:
        self.require("labels")
        try:
            labels = json.loads(self.labels_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise EdgeCNNError(
                f"{self.labels_path} is not valid JSON ({exc}): write a JSON list of class names, or re-run `edgecnn train`"
            ) from None
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) and label for label in labels):
            raise EdgeCNNError(f"{self.labels_path} must hold a non-empty JSON list of class names (strings)")
        if len(set(labels)) != len(labels):
            raise EdgeCNNError(f"{self.labels_path} names a class twice: each class name must be unique")
        return labels

    def task(self) -> str:
        """The task the run was trained for: ``config.yaml``'s ``task`` (the default for runs without one)."""
        from edge_cnn.recipes import load_recipe
        from edge_cnn.tasks import DEFAULT_TASK

        if not self.config_path.is_file():
            return DEFAULT_TASK
        return str(load_recipe(self.config_path).get("task") or DEFAULT_TASK)

    def preprocess(self) -> PreprocessSpec:
        self.require("preprocess")
        return PreprocessSpec.load(self.preprocess_path)

    def write_labels(self, labels: list[str]) -> None:
        write_json(self.labels_path, list(labels))

    def write_split(self, split: str, items: list[tuple[str, int]]) -> None:
        """Write (absolute image path, class index) rows of one split."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["path", "label"])
        writer.writerows((str(Path(path).resolve()), int(label)) for path, label in items)
        write_text(self.split_path(split), buffer.getvalue())

    def read_split(self, split: str) -> list[tuple[str, int]]:
        file = self.split_path(split)
        if not file.is_file():
            raise EdgeCNNError(f"run directory {self.path} has no split list {file.name}")
        try:
            with open(file, newline="") as handle:
                return [(row["path"], int(row["label"])) for row in csv.DictReader(handle)]
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, csv.Error) as exc:
            raise EdgeCNNError(
                f"split list {file} is malformed ({type(exc).__name__}: {exc}): it needs path,label rows; re-run `edgecnn train`"
            ) from None
