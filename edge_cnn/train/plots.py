"""curves.png and confusion.png (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edge_cnn.io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train and val, with the fine-tuning boundary marked."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    shown = [m for m in ("loss", "accuracy") if any(row.get(m) is not None or row.get(f"val_{m}") is not None
                                                   for row in history)] or ["loss"]  # detect has no accuracy
    figure, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for axis, metric in zip(axes[0], shown):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                axis.plot(epochs, [float("nan") if v is None else v for v in values], style, label=prefix + metric)
        for row, previous in zip(history[1:], history):
            if row["stage"] != previous["stage"]:
                axis.axvline(previous["epoch"] + 0.5, color="grey", linestyle=":", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_confusion(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> Path:
    plt = _pyplot()
    size = min(14, 3 + 0.45 * len(labels))
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(confusion, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 6 else 0)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    peak = max((max(row) for row in confusion), default=0)
    if len(labels) <= 20:
        for i, row in enumerate(confusion):
            for j, value in enumerate(row):
                axis.text(j, i, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black")
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure, plt, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return Path(path)
