"""``edgecnn train --hard-negatives DIR``: hard-negative mining for a sliding-window classifier
(Dalal & Triggs 2005's bootstrapping).

1. First pass: the run's settings without ``--hard-negatives`` train a complete run in ``RUN/first_pass``
   (its own model.keras, metrics.json and splits, kept for comparison).
2. Mining: its best model slides over every image of DIR (person-free images) exactly as ``edgecnn
   detect`` does at its defaults (``edge_cnn.windows``: the model's input size as the window, stride
   16, pyramid step 1.25, at most 50,000 windows per image); every window scoring at least
   ``--hard-negatives-threshold`` on the positive class (``person``, the detector's) is a false positive.
   At most ``--hard-negatives-max`` are kept, spread over the images: each image's best window first,
   then each image's second best, ..., the higher score first within a round. No NMS: overlapping
   false positives are kept, as in Dalal & Triggs. They are written as PNG crops into
   ``RUN/hard_negatives/`` (listed in ``mined.csv`` with their source image, box and score).
3. Retraining: the run restarts from the same initial weights (``--weights``, from scratch by default)
   with the same settings, seed and validation/test splits, its training split being the first pass's
   plus the mined windows labelled as the other class (``background``). Restarting, not continuing, is
   Dalal & Triggs' procedure, and keeps the retrained run's epochs and schedule those of the recipe.

``splits/train.csv`` lists the crops, so ``--resume``, export's calibration and later stages see the
same data; ``data_report.json`` counts them under ``hard_negatives``. ``--resume`` continues whichever
step was interrupted. DIR must be disjoint from any frames the detector is evaluated on.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.io import atomic_path, write_json, write_text
from edge_cnn.preprocess import PreprocessSpec, find_images, to_pil
from edge_cnn.run_dir import SPLITS, RunDir
from edge_cnn.train.config import TrainConfig
from edge_cnn.windows import (DEFAULT_MAX_WINDOWS, DEFAULT_POSITIVE, DEFAULT_SCALE_STEP, DEFAULT_STRIDE, iter_windows,
                              pyramid_images, pyramid_levels)

FIRST_PASS = "first_pass"
FOLDER = "hard_negatives"
MINED_CSV = "mined.csv"
SUMMARY = "summary.json"  # written last: mining is done


def class_indices(classes: Sequence[str], data: Any = None) -> tuple[int, int]:
    """(positive, negative) class indices: the detector's positive class (``person``) and the other one."""
    classes = list(classes)
    if len(classes) != 2 or DEFAULT_POSITIVE not in classes:
        raise EdgeCNNError(
            f"--hard-negatives mines windows for a sliding-window classifier of two classes, {DEFAULT_POSITIVE!r} and "
            f"a background class; {data or 'the data'} has the classes {classes}: drop --hard-negatives or use such data"
        )
    positive = classes.index(DEFAULT_POSITIVE)
    return positive, 1 - positive


def keras_scorer(model, spec: PreprocessSpec, positive: int, batch_size: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 window crops (N, h, w, C) at the model's input size -> positive-class probabilities (N,)."""

    def score(crops: np.ndarray) -> np.ndarray:
        parts = [np.asarray(model(spec.to_layout(spec.normalize(crops[i : i + batch_size])), training=False))[:, positive]
                 for i in range(0, len(crops), batch_size)]
        return np.concatenate(parts) if parts else np.zeros(0)

    return score


def score_images(
    paths: Sequence[Path],
    score: Callable[[np.ndarray], np.ndarray],
    *,
    window: tuple[int, int],
    color: str = "rgb",
    threshold: float = 0.5,
    stride: tuple[int, int] = DEFAULT_STRIDE,
    scale_step: float = DEFAULT_SCALE_STEP,
    max_windows: int | None = DEFAULT_MAX_WINDOWS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Slide ``score`` over every image: (windows scoring >= ``threshold``, a summary).

    A window is {image (index into ``paths``), level, y, x (top-left at that level), scale, score}; an
    unreadable image, or one smaller than the window, is skipped and named in ``summary["skipped"]``."""
    hits, windows, skipped = [], 0, []
    for index, path in enumerate(paths):
        try:
            image = to_pil(path).convert("RGB" if color == "rgb" else "L")
            scales, _ = pyramid_levels((image.height, image.width), window, stride, scale_step, max_windows)
        except EdgeCNNError as exc:
            skipped.append({"path": str(path), "reason": str(exc)})
            continue
        for level, (scale, crops, corners) in enumerate(iter_windows(image, window, stride, scales)):
            scores = np.asarray(score(crops), dtype=np.float64)
            windows += len(scores)
            for (y, x), value in zip(corners[scores >= threshold], scores[scores >= threshold]):
                hits.append({"image": index, "level": level, "y": int(y), "x": int(x), "scale": float(scale),
                             "score": float(value)})
    return hits, {"images": len(paths) - len(skipped), "windows": windows, "above_threshold": len(hits),
                  "skipped": skipped}


def select(hits: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` windows spread over the images: every image's best first, then every image's
    second best, ...; within a round the higher score first."""
    rank: dict[int, int] = {}
    ranked = []
    for hit in sorted(hits, key=lambda h: (h["image"], -h["score"])):
        rank[hit["image"]] = rank.get(hit["image"], -1) + 1
        ranked.append((rank[hit["image"]], -hit["score"], hit["image"], hit))
    ranked.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in ranked[:limit]]


def write_crops(chosen: list[dict[str, Any]], paths: Sequence[Path], folder: Path, *, window: tuple[int, int],
                color: str = "rgb", stride: tuple[int, int] = DEFAULT_STRIDE, scale_step: float = DEFAULT_SCALE_STEP,
                max_windows: int | None = DEFAULT_MAX_WINDOWS) -> list[dict[str, Any]]:
    """Cut each chosen window out of the same pyramid level it was scored on; write it as a PNG into
    ``folder``. Returns the rows of mined.csv (crop path, source image, box in image pixels, score)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for hit in chosen:
        by_image.setdefault(hit["image"], []).append(hit)
    rows = []
    for index, hits in sorted(by_image.items()):
        image = to_pil(paths[index]).convert("RGB" if color == "rgb" else "L")
        scales, _ = pyramid_levels((image.height, image.width), window, stride, scale_step, max_windows)
        levels = dict(enumerate(level for _, level in pyramid_images(image, window, scales)))
        for hit in sorted(hits, key=lambda h: -h["score"]):
            y, x, scale = hit["y"], hit["x"], hit["scale"]
            crop = levels[hit["level"]][y : y + window[0], x : x + window[1]]
            name = f"{index:05d}_{Path(paths[index]).stem}_l{hit['level']}_y{y}_x{x}.png"
            with atomic_path(folder / name) as tmp:
                Image.fromarray(crop[:, :, 0] if crop.shape[2] == 1 else crop).save(tmp, format="PNG")
            rows.append({"path": str((folder / name).resolve()), "source": str(paths[index]),
                         "x": round(x / scale), "y": round(y / scale), "w": round(window[1] / scale),
                         "h": round(window[0] / scale), "score": round(hit["score"], 6)})
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["path", "source", "x", "y", "w", "h", "score"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _say(verbose: int | bool, message: str) -> None:
    if verbose:
        print(message, file=sys.stderr, flush=True)


def mine(run: RunDir, config: TrainConfig, first: RunDir, verbose: int | bool = 1) -> dict[str, Any]:
    """Mine with the first pass's best model; write the crops, mined.csv and summary.json (last)."""
    from edge_cnn.keras_file import load_keras_model

    labels, spec = first.labels(), first.preprocess()
    positive, negative = class_indices(labels, config.data)
    paths = find_images(config.hard_negatives, "--hard-negatives")
    window = (spec.height, spec.width)
    threshold, limit = float(config.hard_negatives_threshold), int(config.hard_negatives_max)
    _say(verbose, f"hard negatives: sliding the first pass's model over {len(paths)} images of {config.hard_negatives} "
                  f"(window {window[0]}x{window[1]}, stride {DEFAULT_STRIDE[0]}, scale step {DEFAULT_SCALE_STEP})")
    model = load_keras_model(first.model_path)
    hits, summary = score_images(paths, keras_scorer(model, spec, positive), window=window, color=spec.color,
                                 threshold=threshold)
    folder = run.path / FOLDER
    rows = write_crops(select(hits, limit), paths, folder, window=window, color=spec.color)
    _write_rows(folder / MINED_CSV, rows)
    first_metrics = json.loads(first.metrics_path.read_text()) if first.metrics_path.is_file() else {}
    summary = {
        "source": str(config.hard_negatives), "class": labels[negative], "positive": labels[positive],
        "threshold": threshold, "max": limit, "window": list(window), "stride": list(DEFAULT_STRIDE),
        "scale_step": DEFAULT_SCALE_STEP, "max_windows_per_image": DEFAULT_MAX_WINDOWS,
        **summary, "mined": len(rows), "images_with_mined": len({row["source"] for row in rows}),
        "folder": str(folder), "first_pass": str(first.path),
        "first_pass_accuracy": {split: (first_metrics.get(split) or {}).get("accuracy") for split in SPLITS},
    }
    write_json(folder / SUMMARY, summary)
    _say(verbose, f"hard negatives: {summary['above_threshold']} of {summary['windows']} windows scored >= {threshold:g} "
                  f"as {labels[positive]}; kept {len(rows)} (max {limit}) from {summary['images_with_mined']} images "
                  f"as {labels[negative]} in {folder}; retraining from the start")
    return summary


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_run_data(run: RunDir, config: TrainConfig, first: RunDir, summary: dict[str, Any]) -> None:
    """The retrained run's contract files: the first pass's labels, preprocessing and splits, its
    training split plus the mined crops (the negative class); data_report.json counts them."""
    labels = first.labels()
    negative = labels.index(summary["class"])
    mined = [(row["path"], negative) for row in _read_rows(run.path / FOLDER / MINED_CSV)]
    splits = {split: first.read_split(split) for split in SPLITS}
    splits["train"] = splits["train"] + mined
    run.write_labels(labels)
    first.preprocess().save(run.preprocess_path)
    for split in SPLITS:
        run.write_split(split, splits[split])
    report = json.loads(first.data_report_path.read_text()) if first.data_report_path.is_file() else {}
    train = report.setdefault("splits", {}).setdefault("train", {"images": 0, "per_class": {}})
    train["images"] = len(splits["train"])
    train.setdefault("per_class", {})[summary["class"]] = train["per_class"].get(summary["class"], 0) + len(mined)
    report["hard_negatives"] = summary
    write_json(run.data_report_path, report)
    resolved = TrainConfig.load(first.config_path).to_dict()
    resolved.update(out=config.out, hard_negatives=config.hard_negatives,
                    hard_negatives_max=config.hard_negatives_max,
                    hard_negatives_threshold=config.hard_negatives_threshold)
    TrainConfig.from_dict(resolved).save(run.config_path)


def bootstrap(run: RunDir, config: TrainConfig, *, resume: bool, callbacks=(), verbose: int = 1):
    """Steps 1 and 2 (first pass, mining) and the retrained run's data files, each skipped when a
    resumed run already did it. Returns the first pass's RunResult when it was interrupted, else None."""
    from edge_cnn.train.trainer import train

    first = RunDir(run.path / FIRST_PASS)
    started = first.model_path.exists() or (first.checkpoints_dir / "latest.json").exists()
    if not resume:
        if started:
            raise EdgeCNNError(f"{run.path} already holds a training run (its {FIRST_PASS}): continue it with --resume "
                               "or choose another --out")
        config.save(run.config_path)  # --resume finds the run before the first pass ends
    if not first.model_path.is_file():
        first_config = TrainConfig.from_dict({**config.to_dict(), "hard_negatives": None, "out": str(first.path)})
        _say(verbose, f"hard negatives: first pass in {first.path}")
        result = train(first_config, resume=(first.checkpoints_dir / "latest.json").exists(), callbacks=callbacks,
                       verbose=verbose, on_data=lambda classes: class_indices(classes, config.data))
        if result.interrupted:
            result.run_dir, result.config = run.path, config  # `--resume` goes to the whole run
            return result
    summary_path = run.path / FOLDER / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else mine(run, config, first, verbose)
    write_run_data(run, config, first, summary)
    return None


def metrics_entry(run: RunDir) -> dict[str, Any]:
    """metrics.json's ``hard_negatives``: what was mined, and the first pass's accuracy to compare with."""
    report = json.loads(run.data_report_path.read_text()) if run.data_report_path.is_file() else {}
    summary = report.get("hard_negatives") or {}
    keys = ("source", "mined", "images", "images_with_mined", "windows", "above_threshold", "threshold", "max",
            "first_pass", "first_pass_accuracy")
    return {key: summary.get(key) for key in keys}
