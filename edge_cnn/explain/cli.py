"""``edgecnn explain``: heatmaps, activations, filter patterns and folder summaries of a run's
Keras model. A thin layer over :mod:`edge_cnn.explain`; TensorFlow loads only when it runs."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
import numpy as np

from edge_cnn.options import finish_batch, recipe_option
from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.io import ensure_writable_dir, ensure_writable_file
from edge_cnn.explain.methods import METHODS
from edge_cnn.preprocess import find_images
from edge_cnn.run_dir import RunDir

EXAMPLES = """
\b
Examples:
  edgecnn explain runs/ped a.png b.png --method gradcam --out explain/    # one overlay PNG per image
  edgecnn explain runs/ped a.png --method cam --save-raw                  # CAM + raw .npy maps
  edgecnn explain runs/ped a.png --layer block16_expand_relu6 --class person
  edgecnn explain runs/ped a.png --activations --layers 4 --out acts.png  # feature-map grids
  edgecnn explain runs/ped --filters conv1_relu6 --out filters.png        # filter patterns
  edgecnn explain runs/ped --data ped/person --summary --box center-band  # mean heat + share in box
  edgecnn explain runs/ped --split test --class person --summary --box center-band
\b
Boxes are relative (x0,y0,x1,y1 in 0..1); center-band = 0.25,0.1,0.75,0.9: the middle half of the
width and 80% of the height, where the person stands in a 64x128 pedestrian window.
"""


@click.command(epilog=EXAMPLES, context_settings={"max_content_width": 100})
@click.argument("run", type=click.Path())
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--method", type=click.Choice(METHODS), default="gradcam", show_default=True,
              help="gradcam: any conv model and layer; cam: GAP + dense head only.")
@click.option("--out", type=click.Path(), help="Output folder (default RUN/explain); a .png file for one figure.")
@click.option("--layer", help="Grad-CAM layer name (default: the last feature map before the head).")
@click.option("--class", "class_name", help="Explain this class from labels.json instead of the predicted one.")
@click.option("--save-raw", is_flag=True, help="Also save the heatmaps as .npy (float32 HxW in 0..1).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Heat opacity.")
@click.option("--activations", "show_activations", is_flag=True, help="Draw intermediate feature maps.")
@click.option("--layers", default="4", show_default=True,
              help="With --activations: N evenly spaced feature layers, or comma-separated names.")
@click.option("--channels", type=click.IntRange(1, 64), default=8, show_default=True,
              help="With --activations: most active channels shown per layer.")
@click.option("--filters", "filters_layer", metavar="LAYER", help="Synthesise patterns that maximise LAYER's filters.")
@click.option("--num-filters", type=click.IntRange(1, 256), default=16, show_default=True,
              help="With --filters: the first N filters.")
@click.option("--steps", type=click.IntRange(1, 10000), default=80, show_default=True,
              help="With --filters: gradient-ascent steps.")
@click.option("--data", type=click.Path(), help="Folder of images (searched recursively) to explain or summarise.")
@click.option("--split", type=click.Choice(["train", "val", "test"]),
              help="Add the images of the run's split (splits/NAME.csv); with --class, only that class's.")
@click.option("--summary", "summarise", is_flag=True, help="Mean heatmap over the images + heat share in --box.")
@click.option("--box", help="center-band or x0,y0,x1,y1 (relative) for the --summary heat share.")
@recipe_option
def explain(run, images, method, out, layer, class_name, save_raw, alpha, show_activations, layers, channels,
            filters_layer, num_filters, steps, data, split, summarise, box):
    """Show what the network in RUN looks at: heatmaps, feature maps, filter patterns.

    RUN is a run directory of `edgecnn train` (its model.keras: explanations need gradients,
    so TFLite/ONNX files are refused). IMAGES go through the run's preprocess.json.
    """
    modes = [flag for flag, on in (("--activations", show_activations), ("--filters", filters_layer),
                                   ("--summary", summarise)) if on]
    if len(modes) > 1:
        raise EdgeCNNError(f"{' and '.join(modes)} are separate modes: run them one at a time")
    if box and not summarise:
        raise EdgeCNNError("--box applies to --summary: add --summary (and --data FOLDER)")
    from edge_cnn.explain.graph import open_run
    from edge_cnn.explain.localization import parse_box

    parsed_box = parse_box(box)
    explained = open_run(run)
    class_index = _class_index(class_name, explained.labels)
    out_dir = Path(out) if out else explained.path / "explain"
    if out and Path(out).suffix.lower() == ".png":
        ensure_writable_file(out, "--out")
    else:
        ensure_writable_dir(out_dir)
    if filters_layer:
        return _filters(explained, filters_layer, num_filters, steps, out, out_dir)
    items = _collect_images(images, data, _split_images(explained.path, split, class_index))
    if show_activations:
        return _activations(explained, items, layers, channels, out, out_dir)
    if summarise:
        return _summary(explained, items, method, layer, class_index, parsed_box, save_raw, out_dir)
    return _heatmaps(explained, items, method, layer, class_index, save_raw, alpha, out_dir)


def _class_index(class_name: str | None, labels: list[str]) -> int | None:
    if class_name is None:
        return None
    if class_name not in labels:
        raise EdgeCNNError(f"--class {class_name!r} is not a class of this run; labels.json has: {', '.join(labels)}")
    return labels.index(class_name)


def _split_images(run_path: Path, split: str | None, class_index: int | None) -> list[Path]:
    """Held-out images of the run (e.g. the test split), optionally only those labelled ``class_index``."""
    if split is None:
        return []
    rows = RunDir(run_path).read_split(split)
    chosen = [Path(path) for path, label in rows if class_index is None or label == class_index]
    if not chosen:
        raise EdgeCNNError(f"split {split} of {run_path} has no images{'' if class_index is None else ' of that class'}")
    return chosen


def _collect_images(images: tuple[str, ...], data: str | None, split_images: list[Path]) -> list[Path]:
    items = [Path(image) for image in images] + split_images
    if data:
        items += find_images(data, "--data")
    if not items:
        raise EdgeCNNError("no images given: pass IMAGE paths, --data FOLDER or --split test")
    return items


@contextlib.contextmanager
def _progress(description: str, total: int):
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda done: progress.update(task, completed=done)


def _heatmaps(explained, items, method, layer, class_index, save_raw, alpha, out_dir: Path) -> None:
    from edge_cnn.explain.heatmaps import explain_images
    from edge_cnn.report import print_table

    with _progress(f"{method} heatmaps", len(items)) as advance:
        result = explain_images(explained, items, method, layer=layer, class_index=class_index, out_dir=out_dir,
                                save_raw=save_raw, alpha=alpha, on_image=advance)
    print_table(result.rows, ["image", "predicted", "score", "explained", "layer", "png", "error"],
                title=f"{method} heatmaps")
    if len(result.rows) > len(result.failures):
        click.echo(f"results saved to {out_dir}")
    finish_batch(result.failures, len(result.rows) - len(result.failures), f"were written to {out_dir}")


def _figure_path(out: str | None, out_dir: Path, name: str) -> Path:
    return Path(out) if out and Path(out).suffix.lower() == ".png" else out_dir / f"{name}.png"


def _activations(explained, items, layers, channels, out, out_dir: Path) -> None:
    from edge_cnn.explain.drawing import save_png
    from edge_cnn.explain.feature_maps import activation_grid, activations
    from edge_cnn.explain.heatmaps import unique_stems

    if out and Path(out).suffix.lower() == ".png" and len(items) > 1:
        raise EdgeCNNError(f"--out {out} names one file but {len(items)} images were given: pass a folder")
    spec = explained.spec
    failures = []
    for item, stem in zip(items, unique_stems(items)):
        try:
            pixels = spec.load_image(item)
        except ImageError as exc:
            failures.append((str(item), str(exc)))
            continue
        maps = activations(explained.model, spec.normalize(pixels), layers)
        path = _figure_path(out, out_dir, f"{stem}_activations")
        save_png(path, activation_grid(maps, channels, title=f"{item.name}: feature maps"))
        click.echo(f"{item}: {', '.join(maps)} -> {path}")
    finish_batch(failures, len(items) - len(failures), f"were written to {out_dir}")


def _filters(explained, layer, num_filters, steps, out, out_dir: Path) -> None:
    from edge_cnn.explain.drawing import save_png
    from edge_cnn.explain.filters import filter_patterns, pattern_grid
    from edge_cnn.report import print_table

    with _progress(f"gradient ascent on {layer}", steps) as advance:
        patterns = filter_patterns(explained.model, layer, num_filters, steps,
                                   value_range=explained.spec.value_range(), on_step=advance)
    path = _figure_path(out, out_dir, f"filters_{patterns.layer}")
    save_png(path, pattern_grid(patterns))
    rows = [{"filter": f, "start activation": float(s), "final activation": float(e)}
            for f, s, e in zip(patterns.filters, patterns.start_scores, patterns.final_scores)]
    print_table(rows, title=f"{patterns.layer}: mean activation, noise -> pattern ({path})")


def _summary(explained, items, method, layer, class_index, box, save_raw, out_dir: Path) -> None:
    from edge_cnn.explain.drawing import overlay, save_png
    from edge_cnn.explain.localization import summary
    from edge_cnn.io import atomic_path, write_json
    from edge_cnn.report import print_table

    with _progress(f"{method} over {len(items)} images", len(items)) as advance:
        result = summary(explained.model, items, explained.spec, box, method=method, layer=layer,
                         class_index=class_index, on_batch=advance)
    data = {"run": str(explained.path), **result.to_dict()}
    if class_index is not None:
        data["class"] = explained.labels[class_index]
    title = f"mean {method} over {result.count} images"
    if box and result.heat_share is not None:
        title += f" | heat in {box.name}: {result.heat_share:.2f} (area {result.box_area_share:.2f})"
    height, width = result.mean_heatmap.shape
    save_png(out_dir / f"mean_heatmap_{method}.png",
             overlay(result.mean_image, result.mean_heatmap, title, image_title="mean input",
                     box=box.pixels(height, width) if box else None))
    write_json(out_dir / f"summary_{method}.json", data)
    if save_raw:
        with atomic_path(out_dir / f"mean_heatmap_{method}.npy") as tmp:
            np.save(tmp, result.mean_heatmap)
    keys = ["images", "layer", "map_resolution", "heat_share", "box_area_share", "heat_to_area_ratio",
            "heat_share_ceiling"]
    print_table([{key: data.get(key) for key in keys} | {"failed": len(result.failed)}],
                title=f"{title} -> {out_dir / f'summary_{method}.json'}")
    finish_batch(list(result.failed), result.count, f"were summarised in {out_dir}")
