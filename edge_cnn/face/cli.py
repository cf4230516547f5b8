"""``edgecnn face enroll|identify``: add people to a gallery, then name faces by embedding.

Both verbs follow the project's rule for bad input: the output file is proved writable before any
work, one bad image or person folder does not sink the others, and the end is one ``error:`` line.
"""

from __future__ import annotations

import json

import click

from edge_cnn.face.gallery import DEFAULT_THRESHOLD
from edge_cnn.formats import embedded_formats
from edge_cnn.options import collect_inputs, finish_batch


@click.group()
def face() -> None:
    """Face identification with enrollment: no retraining to add a person.

    \b
    Examples:
      edgecnn face enroll gallery/ --model runs/faces/export --out gallery.npz
      edgecnn face identify --gallery gallery.npz probe1.png probe2.png --json
    """


def _load_predictor(model: str, backend: str, precision: str | None):
    from edge_cnn.runtime import Predictor

    predictor = Predictor.load(model, backend=backend, precision=precision)
    click.echo(f"model: {predictor.describe()}", err=True)
    return predictor


_backend = click.option("--backend", type=click.Choice(["auto", *embedded_formats()]), default="auto", show_default=True)
_precision = click.option("--precision", default=None, help="Artifact precision from an export folder (default: measured by `bench --select`, else by the CPU).")


@face.command()
@click.argument("gallery_dir", type=click.Path())
@click.option("--model", required=True, help="Export folder (or artifact) whose manifest has an embedding output.")
@click.option("--out", type=click.Path(), default="gallery.npz", show_default=True,
              help="Gallery file to write; it records the model file's absolute path and sha256.")
@_backend
@_precision
def enroll(gallery_dir, model, out, backend, precision):
    """Enroll every person of GALLERY_DIR (one sub-folder of images per person) into --out.

    An unreadable image or a person folder without images is reported, the others are enrolled
    and written (exit code 2).

    \b
    Example:
      edgecnn face enroll new_staff/ --model runs/faces/export --out gallery.npz
    """
    from edge_cnn.face import enroll as enroll_people
    from edge_cnn.io import ensure_writable_file
    from edge_cnn.report import print_table

    out = ensure_writable_file(out, "--out")
    predictor = _load_predictor(model, backend, precision)
    gallery, skipped = enroll_people(predictor, gallery_dir, model=predictor.model_path)
    gallery.save(out)
    print_table([{"person": n, "images": c} for n, c in zip(gallery.names, gallery.counts)], title=f"enrolled into {out}")
    finish_batch([(item["path"], item["reason"]) for item in skipped], sum(gallery.counts), f"were enrolled into {out}")


@face.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--gallery", "gallery_path", required=True, type=click.Path(dir_okay=False))
@click.option("--model", default=None, help="Embedding model (default: the one the gallery was enrolled with).")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
              help="Cosine similarity below which the face is 'unknown' (the default is the equal-error point "
              "measured on AT&T; raise it to reject more strangers, lower it to reject fewer enrolled people).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image: path, identity, score, nearest.")
@_backend
@_precision
def identify(images, gallery_path, model, threshold, as_json, backend, precision):
    """Name the person in each of IMAGES (files or folders) from the enrolled gallery.

    \b
    Example:
      edgecnn face identify --gallery gallery.npz door_cam/ --threshold 0.6 --json
    """
    from edge_cnn.errors import ImageError
    from edge_cnn.face import Gallery, identify as identify_people

    gallery = Gallery.load(gallery_path)
    predictor = _load_predictor(model or gallery.enrolled_model(), backend, precision)
    gallery.check_model(predictor)
    paths, failures = collect_inputs(images)
    identified = 0
    for path in paths:  # one image at a time: a corrupt file fails alone
        try:
            (result,) = identify_people(predictor, gallery, [path], threshold)
        except ImageError as exc:
            failures.append((str(path), str(exc)))
            continue
        identified += 1
        click.echo(json.dumps(result.to_dict()) if as_json else f"{result.path}\t{result.identity}\t{result.score:.4f}")
    finish_batch(failures, identified, "were identified above")
