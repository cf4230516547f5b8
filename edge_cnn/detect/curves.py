"""The two plots of a detection evaluation (matplotlib, Agg backend, imported on use): precision against
recall at IoU 0.5, whose area the AP@0.5 summarises, and miss rate against false positives per image on
log-log axes, the Caltech pedestrian benchmark's figure, whose log-average over FPPI 1e-2..1 is the miss
rate reported. One curve per model (per model and class when the model has several classes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edge_cnn.io import atomic_path

MISS_RATE_TICKS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.64, 0.8, 1.0)  # the Caltech toolbox's y ticks


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curves(models: Sequence[Any]):
    """(legend name, metrics of that class, curve dict) per model and class."""
    for item in models:
        classes = item.metrics["per_class"]
        for label, curve in item.curves.items():
            name = item.kind if len(item.curves) == 1 else f"{item.kind}: {label}"
            yield name, classes[label], curve


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path


def plot_precision_recall(models: Sequence[Any], path: str | Path, title: str) -> Path:
    """Precision after each ranked detection against recall, IoU 0.5, AP@0.5 in the legend."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    for name, metrics, curve in _curves(models):
        ap = metrics["ap_50"]
        axes.plot(curve["recall"], curve["precision"],
                  label=f"{name} (AP@0.5 {'n/a' if ap is None else f'{ap:.3f}'})")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall (boxes found, IoU >= 0.5)")
    axes.set_ylabel("precision (detections that are boxes)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return _save(plt, figure, Path(path))


def plot_miss_rate(models: Sequence[Any], path: str | Path, title: str) -> Path:
    """Miss rate against false positives per image, both log (Caltech): lower-left is better; the
    log-average miss rate over FPPI 1e-2..1 (shaded) in the legend."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 5))
    for name, metrics, curve in _curves(models):
        rate = metrics["log_average_miss_rate"]
        axes.plot(curve["fppi"], curve["miss_rate"], drawstyle="steps-post",
                  label=f"{name} ({'n/a' if rate is None else f'{100 * rate:.1f}%'} log-avg miss rate)")
    axes.axvspan(1e-2, 1.0, color="grey", alpha=0.08)
    axes.set_xscale("log", nonpositive="mask")
    axes.set_yscale("log", nonpositive="mask")
    axes.set_xlim(1e-3, 1e1)
    axes.set_ylim(MISS_RATE_TICKS[0], 1.0)
    axes.set_yticks(MISS_RATE_TICKS)
    axes.set_yticklabels([f"{tick:g}" for tick in MISS_RATE_TICKS])
    axes.minorticks_off()
    axes.set_xlabel("false positives per image")
    axes.set_ylabel("miss rate")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    return _save(plt, figure, Path(path))
