"""Classification metrics from predicted probabilities (numpy): what metrics.json holds.

The reported loss is the plain cross-entropy of the predictions, without the label
smoothing and L2 terms of the training objective, so runs with different
regularisation compare on one scale.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def predict_split(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(true class indices, probabilities) over a non-shuffled (x, one-hot y) dataset."""
    truths, probabilities = [], []
    for images, onehot in dataset:
        probabilities.append(np.asarray(model(images, training=False)))
        truths.append(np.argmax(np.asarray(onehot), axis=-1))
    if not truths:
        return np.zeros(0, dtype=np.int64), np.zeros((0, model.output_shape[-1]), dtype=np.float32)
    return np.concatenate(truths), np.concatenate(probabilities)


def classification_metrics(truth: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, cross-entropy, per-class precision/recall/F1/support and the confusion matrix
    (rows = true class, columns = predicted class)."""
    count = len(labels)
    predicted = np.argmax(probabilities, axis=-1) if len(truth) else np.zeros(0, dtype=np.int64)
    confusion = np.zeros((count, count), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for index, label in enumerate(labels):
        true_positive = int(confusion[index, index])
        predicted_count = int(confusion[:, index].sum())
        actual_count = int(confusion[index, :].sum())
        precision = true_positive / predicted_count if predicted_count else 0.0
        recall = true_positive / actual_count if actual_count else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_count}
    images = int(len(truth))
    picked = probabilities[np.arange(images), truth] if images else np.zeros(0)
    return {
        "images": images,
        "accuracy": float(np.mean(predicted == truth)) if images else None,
        "loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))) if images else None,
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])) if images else None,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def summary_rows(metrics: dict[str, Any], splits: Sequence[str] = ("train", "val", "test")) -> list[dict[str, Any]]:
    """One table row per split for the terminal."""
    return [
        {"split": split, "images": metrics[split]["images"], "accuracy": metrics[split]["accuracy"],
         "loss": metrics[split]["loss"], "macro F1": metrics[split]["macro_f1"]}
        for split in splits
        if split in metrics
    ]


def per_class_rows(split_metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"class": label, **values} for label, values in split_metrics["per_class"].items()]
