"""``edgecnn detect``: pedestrians in full images with an exported window classifier.

Bad options fail before any work, and one bad image does not sink the others: the verb's
errors follow the project's rule (one ``error:`` line naming the thing and the fix, exit 2).
"""

from __future__ import annotations


import click

from edge_cnn.errors import EdgeCNNError
from edge_cnn.formats import embedded_formats
from edge_cnn.options import collect_inputs, finish_batch
from edge_cnn.preprocess import parse_size
from edge_cnn.windows import DEFAULT_MAX_WINDOWS, DEFAULT_POSITIVE


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """'HxW' or 'N' -> (height, width); a bad size is a usage error naming the flag."""
    try:
        return parse_size(value) if value is not None else None
    except EdgeCNNError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(), required=True,
              help="Folder for <name>.json and the annotated <name>.png per image, <name> being the image's path "
              "relative to the inputs' common folder without suffix (a/scene.png, b/scene.png -> OUT/a/scene.json, "
              "OUT/b/scene.json); names that still meet get -2, -3, ... appended.")
@click.option("--positive", default=None,
              help="The class that counts as a detection (window classifier: default person; detection export: "
                   "default every class).")
@click.option("--window", default=None, callback=_size, help="Window classifier: window HxW (default: the model's input size).")
@click.option("--stride", default="16", show_default=True, callback=_size,
              help="Window classifier: window step in pixels, N or HxW.")
@click.option("--scale-step", type=click.FloatRange(min=1, min_open=True), default=1.25, show_default=True,
              help="Window classifier: pyramid downscale factor per level.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Minimum score of a box.")
@click.option("--nms", "iou_threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="IoU above which NMS drops the weaker box (default: 0.3 for a window classifier, the manifest's "
                   "for a detection export).")
@click.option("--max-windows", type=click.IntRange(min=1), default=DEFAULT_MAX_WINDOWS, show_default=True,
              help="Windows per image at most: beyond it the finest pyramid levels are skipped (small people are "
              "missed) with a warning naming the image. A 640x480 frame needs 1,922 at the defaults.")
@click.option("--backend", type=click.Choice(["auto", *embedded_formats()]), default="auto", show_default=True)
@click.option("--precision", default=None, help="Artifact precision from an export folder (default: measured by `bench --select`, else by the CPU).")
def detect(model, images, out, positive, window, stride, scale_step, threshold, iou_threshold, max_windows, backend, precision):
    """Detect pedestrians in IMAGES with MODEL, an export folder. A detection export (`edgecnn train
    --task detect`) sees each whole image letterboxed and its box map is decoded in numpy; a window
    classifier is slid over an image pyramid, its windows batched through the embedded runtime. Boxes
    above --threshold are kept, then NMS.

    An unreadable image is reported and the others are still processed (exit code 2).

    \b
    Examples:
      edgecnn detect runs/ped/export street.jpg --out detections/
      edgecnn detect runs/ped/export photos/ --out det/ --stride 8 --scale-step 1.1 --threshold 0.9
      edgecnn detect runs/det/export street.jpg --out detections/ --threshold 0.4   # a detection export
    """
    from edge_cnn.detect.boxes import BoxDetector
    from edge_cnn.detect.detector import PedestrianDetector, detect_files
    from edge_cnn.io import ensure_writable_dir
    from edge_cnn.report import print_table
    from edge_cnn.runtime import Predictor

    out = ensure_writable_dir(out)
    predictor = Predictor.load(model, backend=backend, precision=precision)
    click.echo(f"model: {predictor.describe()}", err=True)
    if predictor.task.data_kind == "boxes":
        detector = BoxDetector(predictor, positive=positive, threshold=threshold, iou_threshold=iou_threshold)
    else:
        detector = PedestrianDetector(predictor, positive=positive or DEFAULT_POSITIVE, window=window, stride=stride,
                                      scale_step=scale_step, threshold=threshold,
                                      iou_threshold=0.3 if iou_threshold is None else iou_threshold,
                                      max_windows=max_windows)
    paths, failures = collect_inputs(images)
    results, errors = detect_files(detector, paths, out)
    rows = [{"image": r["path"], "boxes": len(r["boxes"]), "best score": max((b["score"] for b in r["boxes"]), default=None)} for r in results]
    if rows:
        print_table(rows, title=f"detections ({predictor.kind})")
    for record in results:
        if "warning" in record:
            click.secho(f"warning: {record['warning']}", fg="yellow", err=True)
    if results:
        click.echo(f"results saved to {out} (a .json and an annotated .png per image)")
    finish_batch(failures + [(e["path"], e["error"]) for e in errors], len(results), f"were written to {out}")
