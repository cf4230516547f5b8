"""A model's outputs over a split, and the terminal rows of metrics.json (the task computes the metrics)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_cnn.tasks import get_task


def predict_split(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(true class indices, probabilities) over a non-shuffled (x, one-hot y) dataset."""
    truths, probabilities = [], []
    for images, onehot in dataset:
        probabilities.append(np.asarray(model(images, training=False)))
        truths.append(np.argmax(np.asarray(onehot), axis=-1))
    if not truths:
        return np.zeros(0, dtype=np.int64), np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(truths), np.concatenate(probabilities)


def summary_rows(metrics: dict[str, Any], splits: Sequence[str] = ("train", "val", "test"),
                 task: str | None = None) -> list[dict[str, Any]]:
    """One table row per split for the terminal, with the task's figures."""
    summary = get_task(task).summary
    return [{"split": split, **summary(metrics[split])} for split in splits if split in metrics]


def per_class_rows(split_metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"class": label, **values} for label, values in split_metrics["per_class"].items()]
