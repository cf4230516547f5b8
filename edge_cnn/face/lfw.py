"""LFW View 2 face verification of a model: the API behind ``edgecnn evaluate --protocol lfw``.

A face model is only worth shipping when its verification accuracy on unconstrained photos is measured
with a public protocol, and its int8 export is measured the same way as the model it came from. So this
embeds every image of the pairs file once, with either

- a run directory: the Keras model's feature vector (the task's feature layer, e.g. classify's
  ``head_pool``; nothing subtracted: cosine similarity is what the protocol scores), or
- an export folder: every fp32 and int8 artifact with an embedding output, through the embedded runtime
  (``Predictor.embed``; no TensorFlow on this path),

(with ``flip``, the flip test: each image plus its mirror, summed; the stored threshold then says so, and
the runtime embeds the same way), then scores each pair by cosine similarity and runs
``edge_cnn.tasks.verification``'s protocol: mean and std accuracy over the folds with each fold's threshold
chosen on the others, ROC, TAR at FAR 1e-2 and 1e-3.
It writes ``lfw_report.json`` and ``lfw_roc.png``; for an export it also stores each artifact's operating
threshold (the accuracy-maximising one over all evaluated pairs) in ``manifest.json``, which ``edgecnn
face verify`` uses by default.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_cnn.data.pairs import Pairs, parse_folds, read_pairs
from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, ensure_writable_dir, write_json
from edge_cnn.manifest import MANIFEST_NAME, Verification, load_manifest, source_kind
from edge_cnn.numerics import unit_embeddings
from edge_cnn.tasks.verification import (
    VerificationResult, best_threshold, cosine_similarities, two_way_protocol, verification_protocol,
)

PROTOCOL = "lfw"
EMBED_BATCH = 128  # images decoded and embedded per call: bounded memory for 7,701 LFW images
REPORT_NAME, ROC_NAME = "lfw_report.json", "lfw_roc.png"
PRECISIONS = ("fp32", "int8")
FLIP_SUFFIX = " + flip"  # the kind of a model evaluated with the flip test

Embedder = Callable[[Sequence[str]], np.ndarray]  # image paths -> (N, D) embeddings


@dataclasses.dataclass
class ModelResult:
    """One model's verification: what ran, the protocol's result, the operating threshold, speed, size."""

    model: str  # "keras" or the artifact's path relative to the export folder
    kind: str  # "keras fp32", "tflite int8", ...
    result: VerificationResult
    threshold: float  # accuracy-maximising over every evaluated pair: the deployment threshold
    ms_per_face: float  # decode + preprocess + embed, batches of EMBED_BATCH, this process
    bytes: int | None  # model file size (None for the Keras model)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "kind": self.kind, "threshold": self.threshold, "ms_per_face": self.ms_per_face,
                "bytes": self.bytes, **self.result.to_dict()}


@dataclasses.dataclass
class LfwReport:
    source: Path
    pairs: Path
    data: Path
    images: int
    models: list[ModelResult]
    report_json: Path
    roc_png: Path
    manifest: Path | None  # the manifest whose artifacts got their threshold, None for a run

    def rows(self) -> list[dict[str, Any]]:
        """The terminal table: one row per model."""
        rows = []
        for item in self.models:
            result = item.result
            tar = {f"TAR@FAR {point.far_target:g}": f"{100 * point.tar:.1f}%" for point in result.operating_points}
            rows.append({"model": item.kind, "accuracy": f"{100 * result.mean_accuracy:.2f}% ± {100 * result.std_accuracy:.2f}",
                         "threshold": f"{item.threshold:.4f}", **tar, "AUC": f"{result.auc:.4f}",
                         "ms/face": f"{item.ms_per_face:.2f}"})
        return rows


def evaluate_lfw(
    source: str | os.PathLike,
    pairs_txt: str | os.PathLike,
    data: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    test_folds: str | Sequence[int] | None = None,
    batch_size: int = EMBED_BATCH,
    flip: bool = False,
) -> LfwReport:
    """Verify ``source`` (a run directory or an export folder) on the pairs of ``pairs_txt`` whose images
    lie under ``data`` (one folder per person). ``test_folds`` (e.g. "6-10") evaluates only those folds,
    each threshold chosen on the other evaluated folds: for a model trained on the other folds' people.
    ``out`` defaults to ``SOURCE/lfw``. ``flip`` embeds each face and its mirror (``Predictor.embed``'s flip
    test) and records that with the thresholds. A bad pairs file raises ``EdgeCNNError`` before any model loads."""
    source = Path(source)
    pairs = read_pairs(pairs_txt, data)
    folds = parse_folds(test_folds, pairs.folds) if isinstance(test_folds, str) else test_folds
    out = ensure_writable_dir(Path(out) if out is not None else source / "lfw")
    if batch_size < 1:
        raise EdgeCNNError(f"batch size {batch_size} must be at least 1")
    kind = source_kind(source)
    models = []
    embedders = run_embedders(source, flip) if kind == "run" else export_embedders(source, flip)
    for name, model_kind, size, embed in embedders:
        scores, seconds = pair_scores(pairs, embed, batch_size)
        models.append(verify_scores(name, model_kind, pairs, scores, folds, 1000 * seconds, size))
    report_json = write_json(out / REPORT_NAME, report_dict(source, pairs, models))
    roc_png = plot_roc(models, out / ROC_NAME, title=f"LFW View 2: {source.name}")
    manifest = store_thresholds(source, models, flip) if kind == "export" else None
    return LfwReport(source, pairs.source, Path(data), len(unique_images(pairs)), models, report_json, roc_png, manifest)


def unique_images(pairs: Pairs) -> list[str]:
    """Every image the pairs name, once, in the order of first appearance."""
    return list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))


def pair_scores(pairs: Pairs, embed: Embedder, batch_size: int = EMBED_BATCH,
                similarity: Callable[[np.ndarray, np.ndarray], np.ndarray] = cosine_similarities,
                ) -> tuple[np.ndarray, float]:
    """(similarity per pair, seconds per image): each image is embedded once, in batches; ``similarity``
    maps the (pairs, D) features of the two sides to one score per pair, higher meaning more alike."""
    images = unique_images(pairs)
    row = {path: index for index, path in enumerate(images)}
    start = time.perf_counter()
    vectors = np.concatenate([np.asarray(embed(images[at : at + batch_size]), dtype=np.float32).reshape(
        len(images[at : at + batch_size]), -1) for at in range(0, len(images), batch_size)])
    seconds = (time.perf_counter() - start) / len(images)
    first = vectors[[row[pair.path_a] for pair in pairs]]
    second = vectors[[row[pair.path_b] for pair in pairs]]
    return similarity(first, second), seconds


def verify_scores(name: str, kind: str, pairs: Pairs, scores: np.ndarray, test_folds: Sequence[int] | None,
                  ms_per_face: float, size: int | None) -> ModelResult:
    """The protocol on one model's pair scores (all folds, or the two-way variant on ``test_folds``)."""
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    if test_folds is None or set(test_folds) >= set(range(1, pairs.folds + 1)):
        result = verification_protocol(scores, same, folds)
    else:
        result = two_way_protocol(scores, same, folds, test_folds)
    evaluated = np.isin(folds, result.test_folds)
    threshold, _ = best_threshold(scores[evaluated], same[evaluated])
    return ModelResult(name, kind, result, threshold, ms_per_face, size)


def run_embedders(run: Path, flip: bool = False):
    """[("keras", "keras fp32", None, embed)]: the run's model up to its task's feature layer."""
    from edge_cnn.keras import keras
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.run_dir import RunDir
    from edge_cnn.tasks import get_task

    run_dir = RunDir(run).require("model", "preprocess")
    model = load_keras_model(run_dir.model_path)
    layer_name = get_task(run_dir.task()).feature_layer
    names = {layer.name for layer in model.layers}
    found = next((name for name in (layer_name, f"quant_{layer_name}") if name in names), None)
    if found is None:
        raise EdgeCNNError(f"{run_dir.model_path} has no {layer_name!r} layer, so there is no feature vector to verify "
                           "faces with: evaluate a model trained by `edgecnn train`")
    features = keras.Model(model.input, model.get_layer(found).output)
    spec = run_dir.preprocess()

    def embed(paths: Sequence[str]) -> np.ndarray:
        batch = spec(list(paths))
        return unit_embeddings(lambda images: features.predict(images, verbose=0), batch,
                               spec.mirror(batch) if flip else None)

    return [("keras", f"keras fp32{FLIP_SUFFIX if flip else ''}", None, embed)]


def export_embedders(export: Path, flip: bool = False):
    """One (path, kind, bytes, embed) per fp32/int8 artifact with an embedding output, each loaded on use."""
    from edge_cnn.formats import embedded_formats
    from edge_cnn.runtime import Predictor

    manifest = load_manifest(export)
    chosen = [artifact for artifact in manifest.artifacts
              if artifact.precision in PRECISIONS and artifact.format in embedded_formats()
              and artifact.status != "FAILED" and any(out.meaning == "embedding" for out in artifact.outputs)]
    if not chosen:
        raise EdgeCNNError(f"{export / MANIFEST_NAME} lists no fp32 or int8 artifact with an embedding output that "
                           "passed parity: export the run with `edgecnn export RUN --embedding [--int8]`")
    for artifact in chosen:
        predictor = Predictor.load(manifest.artifact_path(artifact))
        yield (artifact.path, f"{predictor.kind}{FLIP_SUFFIX if flip else ''}", artifact.bytes,
               lambda paths, predictor=predictor: predictor.embed(paths, flip=flip))


def report_dict(source: Path, pairs: Pairs, models: list[ModelResult]) -> dict[str, Any]:
    from edge_cnn.machine import machine_info

    return {"protocol": PROTOCOL, "source": str(source), "pairs": str(pairs.source), "folds": pairs.folds,
            "pairs_per_fold": 2 * pairs.per_fold, "images": len(unique_images(pairs)),
            "score": "cosine similarity; same person when >= threshold",
            "machine": machine_info(), "models": [model.to_dict() for model in models]}


def plot_roc(models: list[ModelResult], path: Path, title: str) -> Path:
    """TAR against FAR (log axis: the operating points of interest are FAR 1e-2 and 1e-3), one curve per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 5))
    lowest = 1.0
    for item in models:
        result = item.result
        lowest = min(lowest, 1.0 / max(result.impostor_pairs, 1))
        axes.plot(result.fpr, result.tpr, label=f"{item.kind} ({100 * result.mean_accuracy:.1f}%)")
        axes.plot([p.far for p in result.operating_points], [p.tar for p in result.operating_points], "k.")
    axes.set_xscale("log", nonpositive="mask")
    axes.set_xlim(lowest, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("false accept rate (impostor pairs accepted)")
    axes.set_ylabel("true accept rate (genuine pairs accepted)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path


def store_thresholds(export: Path, models: list[ModelResult], flip: bool = False) -> Path:
    """Write each evaluated artifact's operating threshold (and whether it was measured with the flip test)
    into the export's manifest (re-read now, so the other fields stay what they are on disk)."""
    manifest = load_manifest(export)
    measured = {item.model: item for item in models}
    for artifact in manifest.artifacts:
        item = measured.get(artifact.path)
        if item is not None:
            artifact.verification = Verification(
                protocol=PROTOCOL, threshold=item.threshold, mean_accuracy=item.result.mean_accuracy,
                std_accuracy=item.result.std_accuracy, pairs=item.result.genuine_pairs + item.result.impostor_pairs,
                flip=flip)
    return manifest.save(export)
