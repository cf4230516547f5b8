"""``edgecnn predict``: the embedded runtime on the command line (no TensorFlow is imported)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edge_cnn.backends import PROVIDERS
from edge_cnn.formats import all_precisions, embedded_formats
from edge_cnn.io import atomic_path, ensure_writable_dir, output_stems
from edge_cnn.options import collect_inputs, finish_batch, recipe_option
from edge_cnn.runtime.predictor import DEFAULT_BATCH, Predictor


def format_line(prediction) -> str:
    """path<TAB>label<TAB>score, then the rest of the top-k as 'label score' pairs."""
    line = f"{prediction.path}\t{prediction.label}\t{prediction.score:.4f}"
    others = ", ".join(f"{label} {score:.4f}" for label, score in prediction.topk[1:])
    return f"{line}\t{others}" if others else line


HEADER = "path\tlabel\tscore\tother top-k"


def save_annotated(path: Path, prediction, image_path: Path) -> None:
    """The image as PNG with its label and score on a dark band across the top (what a person checks by eye)."""
    from PIL import ImageDraw

    from edge_cnn.preprocess import to_pil

    canvas = to_pil(image_path).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    text = f"{prediction.label} {prediction.score:.2f}"
    left, top, right, bottom = draw.textbbox((0, 0), text)
    draw.rectangle([0, 0, min(canvas.width, right + 6), bottom + 4], fill=(0, 0, 0))
    draw.text((3, 2), text, fill=(255, 255, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


@click.command()
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--topk", default=5, show_default=True, type=click.IntRange(min=1), help="Classes listed per image.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines: path, label, index, score, topk.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", *embedded_formats()]))
@click.option("--provider", default="cpu", show_default=True, type=click.Choice(list(PROVIDERS)), help="ONNX Runtime provider.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="Intra-op threads (default: the runtime's).")
@click.option("--precision", default=None, type=click.Choice(all_precisions()), help="Default: what `bench --select` measured on this CPU, else int8 with VNNI/AMX/SDOT, fp32 without.")
@click.option("--batch-size", default=DEFAULT_BATCH, show_default=True, type=click.IntRange(min=1))
@click.option("--save", "save_dir", type=click.Path(), default=None,
              help="Folder for a copy of each image with its label and score drawn on it (<name>.png, names as in detect).")
@recipe_option
def predict(model, images, topk, as_json, backend, provider, threads, precision, batch_size, save_dir):
    """Predict the class of each image with an exported model, without TensorFlow.

    MODEL is an export folder (manifest.json), a run folder with export/, or one .onnx/.tflite file of an
    export. IMAGE may be a file or a folder (its image files, recursively). One line per image on
    stdout: path, label, score, then the rest of the top-k (a header line first on a terminal only, so
    pipes get data alone). An unreadable image is reported on stderr, the others are still predicted,
    and the exit code is 2. --save writes annotated copies.

    \b
    Examples:
      edgecnn predict runs/face/export img.png                 # the artifact chosen for this CPU (says why)
      edgecnn predict runs/face/export photos/ --json > out.jsonl
      edgecnn predict runs/face/export/model_fp32.onnx a.png b.png --topk 2
      edgecnn predict runs/face/export photos/ --backend onnx --provider cuda --precision fp32
      edgecnn predict runs/face/export photos/ --save annotated/
    """
    out = ensure_writable_dir(save_dir, "--save") if save_dir is not None else None
    predictor = Predictor.load(model, backend=backend, provider=provider, threads=threads, precision=precision)
    click.echo(f"model: {predictor.describe()}", err=True)
    files, failures = collect_inputs(images)
    stems = dict(zip(map(str, files), output_stems(files)))
    if not as_json and sys.stdout.isatty():
        click.echo(HEADER)
    predicted = 0
    for path, prediction, error in predictor.predict_files(files, topk=topk, batch_size=batch_size):
        if error is not None:
            failures.append((path, str(error)))
            continue
        predicted += 1
        click.echo(json.dumps(prediction.to_dict()) if as_json else format_line(prediction))
        if out is not None:
            save_annotated(out / f"{stems[str(path)]}.png", prediction, Path(path))
    if out is not None and predicted:
        click.echo(f"annotated images saved to {out}", err=True)
    finish_batch(failures, predicted, "were predicted")

