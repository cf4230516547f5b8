"""Accuracy beside speed, as ``yolo benchmark`` shows both: each benchmarked model's top-1 accuracy on a
labelled image folder (``bench EXPORT --data DIR`` where DIR holds one sub-folder per class, named as
the manifest's labels), run through the same file and runtime the timing used.

Parity at export time measured each artifact on the run's own test split; this measures it on the
user's images, on the device. A folder of unlabelled images only feeds the timing (no accuracy).
Images go through the manifest's ``PreprocessSpec``; an int8 input is quantized with its scale and
zero point. The arg-max of the first output with one value per label is the prediction (softmax,
logits and dequantization keep the order, so no post-processing changes it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cnn.bench.targets import Target
from edge_cnn.errors import EdgeCNNError
from edge_cnn.numerics import quantize

BATCH = 32


def labelled_items(folder: str | Path, labels: Sequence[str]) -> list[tuple[str, int]] | None:
    """(image, index into ``labels``) for every readable image under a class sub-folder; None when the
    folder has no sub-folder named like a label (plain real inputs). A class the model does not know is
    an error: the accuracy would be wrong, not low."""
    from edge_cnn.data import scan_folder

    folder = Path(folder)
    if not any(path.is_dir() and path.name in labels for path in folder.iterdir()):
        return None
    scan = scan_folder(folder)
    unknown = sorted(set(scan.classes) - set(labels))
    if unknown:
        raise EdgeCNNError(f"--data {folder}: class folder(s) {', '.join(unknown)} are not among the model's labels "
                           f"({', '.join(labels)}): remove them or rename them to labels")
    return [(path, labels.index(scan.classes[index])) for path, index in scan.items]


def add_accuracy(results: list, targets: list[Target], items_by_target: dict[str, list[tuple[str, int]]]) -> None:
    """Set ``accuracy_pct`` on every result of each target that has labelled items."""
    for target in targets:
        items = items_by_target.get(target.label)
        if items:
            value = accuracy_pct(target, items)
            for result in results:
                if result.target == target.label:
                    result.accuracy_pct = value


def accuracy_pct(target: Target, items: list[tuple[str, int]]) -> float:
    """Top-1 accuracy in % of ``target`` (a manifest artifact or the Keras baseline) on ``items``."""
    if target.preprocess is None or not target.labels:
        raise EdgeCNNError(f"{target.path}: accuracy needs the manifest's labels and preprocessing: pass the export folder")
    predict = _keras_predict(target.path) if target.format == "keras" else _file_predict(target)
    correct = 0
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        outputs = predict(target.preprocess([path for path, _ in chunk]))
        scores = next((o.reshape(len(chunk), -1) for o in outputs if o.size == len(chunk) * len(target.labels)), None)
        if scores is None:
            raise EdgeCNNError(f"{target.path} has no output with one value per label ({len(target.labels)}): "
                               "bench --data measures accuracy of classifiers only")
        correct += int(np.sum(np.argmax(scores, axis=1) == [label for _, label in chunk]))
    return 100.0 * correct / len(items)


def _keras_predict(path: Path):
    from edge_cnn.keras_file import load_keras_model

    model = load_keras_model(path)

    def predict(x: np.ndarray) -> list[np.ndarray]:
        outputs = model(x, training=False)
        return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]

    return predict


def _file_predict(target: Target):
    from edge_cnn.backends import open_backend

    backend = open_backend(target.path, backend=target.format, threads=None)
    info = backend.inputs[0]
    quantization = info.quantization
    if quantization is None and target.inputs and target.inputs[0].quantization is not None:
        quantization = (target.inputs[0].quantization.scale, target.inputs[0].quantization.zero_point)
    fixed = info.shape[0] if isinstance(info.shape[0], int) and info.shape[0] > 0 else None

    def predict(x: np.ndarray) -> list[np.ndarray]:
        if quantization is not None and np.dtype(info.dtype).kind in "iu":
            x = quantize(x, *quantization, info.dtype)
        if fixed is not None:  # a file exported with a fixed batch: one call per image
            per_image = [backend.run(x[i:i + 1]) for i in range(len(x))]
            return [np.concatenate([np.asarray(o[k]) for o in per_image]) for k in range(len(per_image[0]))]
        return [np.asarray(o) for o in backend.run(x)]

    return predict
