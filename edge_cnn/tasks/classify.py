"""Image classification: a head of pooling, dropout and a dense softmax; cross-entropy; accuracy,
per-class precision/recall/F1 and the confusion matrix; softmax (for logits) and top-k at run time.

Layer names are the contract the trainer, export and explain rely on: ``head_pool`` (global
average or max pooling, or Flatten: its input is the last feature map, its output the image's
feature vector, the embedding), ``head_dropout`` and ``predictions``. Every other layer
belongs to the backbone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.numerics import softmax
from edge_cnn.tasks import Task, register_task

HEAD_POOL, HEAD_DROPOUT, PREDICTIONS = "head_pool", "head_dropout", "predictions"
POOLINGS = ("avg", "max", "flatten")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One image's answer: the best class, its score (a probability), and the top-k."""

    label: str
    index: int
    score: float
    topk: list[tuple[str, float]]
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (one JSON line of `edgecnn predict --json`)."""
        return {
            "path": self.path,
            "label": self.label,
            "index": self.index,
            "score": self.score,
            "topk": [{"label": label, "score": score} for label, score in self.topk],
        }


class Classify(Task):
    name = "classify"
    model_suffix = "classifier"  # the Keras model's name: <backbone>_classifier
    head_layers = (HEAD_POOL, HEAD_DROPOUT, PREDICTIONS)
    feature_layer = HEAD_POOL

    def build_head(self, features, num_outputs: int, *, dropout: float = 0.2, pooling: str = "avg"):
        """pooling -> Dropout -> Dense softmax. ``pooling`` is Keras Applications' argument plus ``flatten``:
        global pooling makes a bag of local features, Flatten keeps where each feature is, which a shallow
        backbone on a fixed-size window (a pedestrian's head above its legs) needs."""
        from edge_cnn.keras import layers

        x = _pooling_layer(pooling)(features)
        x = layers.Dropout(float(dropout), name=HEAD_DROPOUT)(x)
        return layers.Dense(int(num_outputs), activation="softmax", name=PREDICTIONS)(x)

    def loss(self, label_smoothing: float = 0.0):
        from edge_cnn.keras import keras

        return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)

    def metrics(self) -> list[Any]:
        return ["accuracy"]

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return classification_metrics(truth, outputs, labels)

    def output_meaning(self, ends_in_softmax: bool, logits: bool) -> str:
        return "probabilities" if ends_in_softmax and not logits else "logits"

    def postprocess(self, values: np.ndarray, meaning: str, labels: Sequence[str], topk: int,
                    paths: Sequence[str | None], **options: Any) -> list[Prediction]:
        values = values.reshape(len(values), -1)
        return to_predictions(softmax(values) if meaning == "logits" else values, labels, topk, paths)

    def score(self, outputs: np.ndarray, truth: np.ndarray | None) -> float | None:
        """Top-1 accuracy (%) against the class indices ``truth``."""
        return None if truth is None else 100.0 * float(np.mean(outputs.argmax(1) == truth))

    def parity(self, outputs: np.ndarray, reference: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
        """Accuracy against the labels, top-1 agreement with Keras, max abs difference of the probabilities."""
        return {
            "accuracy": self.score(outputs, truth),
            "agreement": 100.0 * float(np.mean(outputs.argmax(1) == reference.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(outputs - reference))),
        }

    def summary(self, split_metrics: dict[str, Any]) -> dict[str, Any]:
        return {"images": split_metrics["images"], "accuracy": split_metrics["accuracy"],
                "loss": split_metrics["loss"], "macro F1": split_metrics["macro_f1"]}


def _pooling_layer(pooling: str):
    from edge_cnn.keras import layers

    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=HEAD_POOL)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=HEAD_POOL)
    if pooling == "flatten":
        return layers.Flatten(name=HEAD_POOL)
    raise EdgeCNNError(f"--pooling {pooling!r} is not one of {', '.join(POOLINGS)}")


def classification_metrics(truth: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, cross-entropy, per-class precision/recall/F1/support and the confusion matrix
    (rows = true class, columns = predicted class): what metrics.json holds per split.

    The loss is the plain cross-entropy of the predictions, without the label smoothing and L2
    terms of the training objective, so runs with different regularisation compare on one scale."""
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


def to_predictions(probabilities: np.ndarray, labels: list[str], topk: int, paths: list[str | None]) -> list[Prediction]:
    """Rows of class probabilities -> one ``Prediction`` per row (ties keep the lower class index)."""
    k = max(1, min(int(topk), probabilities.shape[1]))
    results = []
    for row, path in zip(probabilities, paths):
        order = np.argsort(-row, kind="stable")[:k]
        best = int(order[0])
        results.append(
            Prediction(
                label=labels[best],
                index=best,
                score=float(row[best]),
                topk=[(labels[int(i)], float(row[int(i)])) for i in order],
                path=path,
            )
        )
    return results


register_task(Classify())
