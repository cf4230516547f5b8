"""Heatmaps for a list of images, written as overlay PNGs plus a JSON report: ``edgecnn explain``'s
main mode as a Python function.

One unreadable image is a row with its error; the others are still explained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge_cnn.errors import ImageError
from edge_cnn.explain.drawing import overlay, save_png
from edge_cnn.explain.graph import ExplainRun, open_run
from edge_cnn.explain.methods import make_explainer
from edge_cnn.io import atomic_path
from edge_cnn.report import write_reports


@dataclasses.dataclass
class HeatmapResult:
    rows: list[dict[str, Any]]  # per image: predicted, score, explained class, layer, png (or error)
    out_dir: Path
    report: Path  # explain_<method>.json

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(row["image"], row["error"]) for row in self.rows if "error" in row]


def explain(run: str | Path | ExplainRun, images: Sequence[str | Path], method: str = "gradcam", *,
            out: str | Path | None = None, **options: Any) -> HeatmapResult:
    """Heatmaps of ``images`` for the model of ``run`` (a run directory) into ``out`` (default RUN/explain)."""
    explained = run if isinstance(run, ExplainRun) else open_run(run)
    out_dir = Path(out) if out else explained.path / "explain"
    return explain_images(explained, [Path(image) for image in images], method, out_dir=out_dir, **options)


def explain_images(explained: ExplainRun, items: Sequence[Path], method: str, *, out_dir: Path, layer: str | None = None,
                   class_index: int | None = None, save_raw: bool = False, alpha: float = 0.4,
                   on_image: Callable[[int], None] | None = None) -> HeatmapResult:
    """One overlay PNG per image (``<stem>_<method>.png``, and the raw map as ``.npy`` with ``save_raw``)."""
    explainer = make_explainer(explained.model, method, layer)
    labels, spec = explained.labels, explained.spec
    rows = []
    for done, (item, stem) in enumerate(zip(items, unique_stems(items)), 1):
        try:
            pixels = spec.load_image(item)
        except ImageError as exc:
            rows.append({"image": str(item), "error": str(exc)})
            continue
        heat = explainer(spec.normalize(pixels[None]), class_index)
        predicted = int(heat.probabilities[0].argmax())
        target = int(heat.classes[0])
        title = f"{item.name}: {labels[predicted]} {heat.probabilities[0, predicted]:.3f}"
        if target != predicted:
            title += f" | heat for {labels[target]}"
        title += f" | {method} @ {heat.layer}"
        png = out_dir / f"{stem}_{method}.png"
        save_png(png, overlay(pixels, heat.maps[0], title, alpha=alpha))
        row = {"image": str(item), "predicted": labels[predicted],
               "score": float(heat.probabilities[0, predicted]), "explained": labels[target],
               "layer": heat.layer, "png": str(png)}
        if save_raw:
            with atomic_path(out_dir / f"{stem}_{method}.npy") as tmp:
                np.save(tmp, heat.maps[0])
            row["npy"] = str(out_dir / f"{stem}_{method}.npy")
        rows.append(row)
        if on_image is not None:
            on_image(done)
    report = out_dir / f"explain_{method}.json"
    write_reports(rows, json_path=report, extra={"run": str(explained.path)})
    return HeatmapResult(rows, out_dir, report)


def unique_stems(items: Sequence[Path]) -> list[str]:
    """File stems, numbered where two images share one (a/x.png, b/x.png)."""
    seen: dict[str, int] = {}
    stems = []
    for item in items:
        count = seen.get(item.stem, 0)
        seen[item.stem] = count + 1
        stems.append(item.stem if count == 0 else f"{item.stem}_{count}")
    return stems
