"""``edgecnn face enroll|identify|verify``: add people to a gallery, name faces by embedding, compare two
photos; and ``edgecnn evaluate`` (classification on a folder, LFW verification with ``--protocol lfw``, or
detection on box annotations, chosen by itself for a detect run or export).

``evaluate`` lives here, not beside the trainer, because its LFW and detection protocols score export folders
through the embedded runtime, a later stage than training; the classification evaluation is still the
trainer's command, the detection one ``edge_cnn.detect.evaluation``.
The face verbs follow the project's rule for bad input: the output file is proved writable before any
work, one bad image or person folder does not sink the others, and the end is one ``error:`` line.
"""

from __future__ import annotations

import json
import os

import click

from edge_cnn.errors import EdgeCNNError
from edge_cnn.face.gallery import DEFAULT_THRESHOLD
from edge_cnn.formats import embedded_formats
from edge_cnn.options import collect_inputs, finish_batch, recipe_option


@click.group()
def face() -> None:
    """Face identification with enrollment: no retraining to add a person.

    \b
    Examples:
      edgecnn face enroll gallery/ --model runs/faces/export --out gallery.npz
      edgecnn face identify --gallery gallery.npz probe1.png probe2.png --json
      edgecnn face verify runs/faces/export a.jpg b.jpg
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


@face.command()
@click.argument("model")
@click.argument("image_a", type=click.Path())
@click.argument("image_b", type=click.Path())
@click.option("--threshold", type=float, default=None,
              help="Cosine similarity at or above which the two faces are the same person (default: the threshold "
              "`edgecnn evaluate MODEL --protocol lfw` stored in the manifest for this artifact).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: same, cosine, threshold, threshold_source.")
@_backend
@_precision
def verify(model, image_a, image_b, threshold, as_json, backend, precision):
    """Say whether IMAGE_A and IMAGE_B show the same person, with MODEL's embeddings (an export folder or
    artifact with an embedding output). Prints same/different, the cosine and the threshold.

    \b
    Examples:
      edgecnn evaluate runs/faces/export --protocol lfw --pairs lfw/pairs.txt --data lfw/images   # stores the threshold
      edgecnn face verify runs/faces/export a.jpg b.jpg
      edgecnn face verify runs/faces/export a.jpg b.jpg --threshold 0.35 --json
    """
    from edge_cnn.face.verify import operating_threshold, verify as verify_faces

    predictor = _load_predictor(model, backend, precision)
    operating_threshold(predictor, threshold)  # a missing threshold fails before any image is read
    verdict = verify_faces(predictor, image_a, image_b, threshold)
    if as_json:
        click.echo(json.dumps(verdict.to_dict()))
        return
    answer = "same" if verdict.same else "different"
    click.echo(f"{answer}\tcosine {verdict.cosine:.4f}\tthreshold {verdict.threshold:.4f} ({verdict.threshold_source})")


@click.command(epilog="""
\b
Examples:
  edgecnn evaluate runs/face --data face
  edgecnn evaluate runs/ped --data ../shared/data/pedestrian --json
  edgecnn evaluate runs/faces --protocol lfw --pairs lfw/pairs.txt --data lfw/images          # the Keras model
  edgecnn evaluate runs/faces/export --protocol lfw --pairs lfw/pairs.txt --data lfw/images   # every fp32/int8 artifact
  edgecnn evaluate runs/faces/export --protocol lfw --pairs lfw/pairs.txt --data lfw/images --test-folds 6-10
  edgecnn evaluate runs/faces/export --protocol lfw --pairs lfw/pairs.txt --data lfw/images --flip   # flip test
  edgecnn evaluate runs/det --data photos/annotations.json --negatives frames/      # a detect run: the Keras model
  edgecnn evaluate runs/det/export --data photos/annotations.json --out eval/       # every detection artifact
""")
@recipe_option
@click.argument("source", metavar="RUN_OR_EXPORT", type=click.Path())
@click.option("--data", required=True,
              help="classify: image folder whose class folders carry the run's label names; lfw: the folder "
              "holding one sub-folder of images per person; detect: box annotations (COCO .json, a Pascal VOC "
              "folder or a YOLO folder).")
@click.option("--protocol", type=click.Choice(["classify", "lfw", "detect"]), default=None,
              show_default="detect for a detect run or export, else classify",
              help="classify: accuracy of a run on a labelled folder; lfw: LFW View 2 face verification "
              "(10 folds, per-fold thresholds, ROC, TAR at FAR 1e-2 and 1e-3) of a run or of every fp32/int8 "
              "embedding artifact of an export, whose thresholds are stored in its manifest; detect: AP@0.5, "
              "AP@[.5:.95], log-average miss rate and FP per person-free frame of a detect run or of every "
              "detection artifact of an export, with precision-recall and miss-rate-vs-FPPI plots.")
@click.option("--negatives", type=click.Path(), default=None,
              help="detect: a folder of person-free images, scored by false positives per frame.")
@click.option("--pairs", type=click.Path(), default=None, help="lfw: the pairs file (LFW View 2 pairs.txt).")
@click.option("--test-folds", default=None,
              help="lfw: evaluate only these folds (e.g. 6-10) when the model trained on the others' people.")
@click.option("--out", type=click.Path(), default=None, show_default="SOURCE/lfw or SOURCE/evaluation",
              help="lfw: folder for lfw_report.json and lfw_roc.png; detect: folder for detection_report.json, "
              "precision_recall.png and miss_rate_fppi.png.")
@click.option("--flip", is_flag=True,
              help="lfw: the flip test: embed each face and its mirror and add the two (twice the inference); the "
              "thresholds stored say so, and `face verify/enroll/identify` then embed the same way.")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of tables.")
@click.pass_context
def evaluate(ctx, source, data, protocol, pairs, test_folds, flip, out, negatives, batch_size, as_json):
    """Evaluate a run's model on another image folder, verify faces on LFW (--protocol lfw), or measure a
    detect run or export on box-annotated photos (chosen by itself for detection models)."""
    from edge_cnn.detect.evaluation import source_task
    from edge_cnn.tasks import get_task

    task = source_task(source)
    detector = task is not None and get_task(task).data_kind == "boxes"
    if protocol is None:
        protocol = "detect" if detector else "classify"
    if negatives is not None and protocol != "detect":
        raise EdgeCNNError(f"--negatives belongs to detection, and {source} is not a detect run or export: "
                           "drop --negatives or pass a model trained with --task detect")
    if protocol == "detect":
        given = [flag for flag, value in (("--pairs", pairs), ("--test-folds", test_folds), ("--flip", flip)) if value]
        if given:
            raise EdgeCNNError(f"{', '.join(given)} belong(s) to --protocol lfw: drop them to evaluate a detector")
        _evaluate_detection(source, data, negatives, out, batch_size, as_json)
        return
    if protocol == "classify":
        given = [flag for flag, value in (("--pairs", pairs), ("--test-folds", test_folds), ("--out", out),
                                          ("--flip", flip)) if value]
        if given:
            raise EdgeCNNError(f"{', '.join(given)} belong(s) to --protocol lfw: add --protocol lfw or drop them")
        if task is not None and os.path.isfile(data):
            raise EdgeCNNError(f"{source} holds a {task!r} model, and --data {data} is a file: box annotations "
                               "evaluate detect runs and exports only; pass an image folder with one sub-folder per class")
        from edge_cnn.train.cli import evaluate as evaluate_classification

        ctx.invoke(evaluate_classification, run=source, data=data, batch_size=batch_size, as_json=as_json)
        return
    if pairs is None:
        raise EdgeCNNError("--protocol lfw needs --pairs PAIRS.txt (LFW View 2) and --data DIR (one folder per person)")
    from edge_cnn.face.lfw import evaluate_lfw
    from edge_cnn.report import print_table

    report = evaluate_lfw(source, pairs, data, out=out, test_folds=test_folds, batch_size=batch_size, flip=flip)
    if as_json:
        click.echo(json.dumps([item.to_dict() for item in report.models], indent=2))
        return
    print_table(report.rows(), title=f"LFW View 2, {report.images} images: {source}")
    stored = f"; thresholds stored in {report.manifest}" if report.manifest else ""
    click.echo(f"report: {report.report_json}, ROC: {report.roc_png}{stored}")


def _evaluate_detection(source, data, negatives, out, batch_size, as_json):
    """``evaluate`` for a detect run or export: ``edge_cnn.detect.evaluation`` does the work, this prints it."""
    from edge_cnn.detect.evaluation import evaluate_detection
    from edge_cnn.report import print_table

    report = evaluate_detection(source, data, negatives=negatives, out=out, batch_size=batch_size)
    if as_json:
        click.echo(json.dumps([item.to_dict() for item in report.models], indent=2))
        return
    frames = f", {report.frames} person-free frames" if report.frames else ""
    print_table(report.rows(), title=f"detection, {report.photos} photos ({report.boxes} boxes){frames}: {source}")
    if report.skipped:
        click.echo(f"{len(report.skipped)} annotations skipped (listed in the report)", err=True)
    click.echo(f"report: {report.report_json}, plots: {report.precision_recall_png}, {report.miss_rate_png}")
