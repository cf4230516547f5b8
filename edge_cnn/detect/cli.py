"""``edgecnn detect``: pedestrians in full images with an exported window classifier."""

from __future__ import annotations

from pathlib import Path

import click

from edge_cnn.cli import parse_size


@click.command()
@click.argument("model")
@click.argument("images", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder for <image>.json and <image>.png.")
@click.option("--positive", default="person", show_default=True, help="The class that counts as a detection.")
@click.option("--window", default=None, help="Window HxW (default: the model's input size).")
@click.option("--stride", default="16", show_default=True, help="Window step in pixels, N or HxW.")
@click.option("--scale-step", type=float, default=1.25, show_default=True, help="Pyramid downscale factor per level.")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Minimum positive-class probability.")
@click.option("--nms", "iou_threshold", type=float, default=0.3, show_default=True, help="IoU above which NMS drops the weaker box.")
@click.option("--backend", type=click.Choice(["auto", "onnx", "tflite"]), default="auto", show_default=True)
@click.option("--precision", default=None, help="Artifact precision to use from an export folder (default: the fastest OK int8).")
def detect(model, images, out, positive, window, stride, scale_step, threshold, iou_threshold, backend, precision):
    """Detect pedestrians in IMAGES: slide MODEL's window over an image pyramid, batch the
    windows through the embedded runtime, keep boxes above --threshold, apply NMS.

    \b
    Examples:
      edgecnn detect runs/ped/export street.jpg --out detections/
      edgecnn detect runs/ped/export photos/ --out det/ --stride 8 --scale-step 1.1 --threshold 0.9
    """
    from edge_cnn.detect.detector import PedestrianDetector, detect_files
    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.report import print_table
    from edge_cnn.runtime import Predictor
    from edge_cnn.runtime.cli import collect_images

    predictor = Predictor.load(model, backend=backend, precision=precision)
    detector = PedestrianDetector(
        predictor,
        positive=positive,
        window=parse_size(window) if window else None,
        stride=parse_size(stride),
        scale_step=scale_step,
        threshold=threshold,
        iou_threshold=iou_threshold,
    )
    paths, problems = collect_images(images)
    results, errors = detect_files(detector, paths, Path(out))
    errors = [{"error": problem} for problem in problems] + errors
    rows = [{"image": r["path"], "boxes": len(r["boxes"]), "best score": max((b["score"] for b in r["boxes"]), default=None)} for r in results]
    if rows:
        print_table(rows, title=f"detections ({predictor.describe()})")
    for error in errors:
        click.secho(f"error: {error['error']}", fg="red", err=True)
    if errors:
        raise EdgeCNNError(f"{len(errors)} of {len(errors) + len(results)} images failed; the others are in {out}")
