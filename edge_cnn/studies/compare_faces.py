"""Faces: OpenCV's Haar cascade and Eigenfaces vs the exported CNNs (fp32 and int8) on the SAME held-out images.

Why: the CNNs must beat the classical methods that need no training data, on the images they held out.
(a) face vs non-face on the face run's test split (the embedded LFW subset, 25x25 grey): Haar frontal-face
    cascade (face if it finds >= 1 detection) vs the CNN (face = arg-max class).
(b) identification on an AT&T-like folder with the id run's test split (2 images per person held out):
    Eigenfaces (PCA + nearest neighbour) fitted on the run's train + val images, read at the CNN's input size
    and colour through the run's ``PreprocessSpec.load_image``, vs the CNN's top-1.

Latency: median ms per single image, images timed one by one, from the decoded uint8 image at its file size:
Haar upscales and runs the cascade; Eigenfaces resizes (load_image) then projects and searches; the CNN goes
through ``Predictor.probabilities`` (resize, normalize, int8 input quantization, forward pass, batch 1);
"Model-only" times the CNN on an already preprocessed float image (input quantization and forward pass).
Issue 7's target: face ID >= 98% top-1. This study measures; it asserts nothing.

    edgecnn study faces --faces-run runs/face --id-run runs/faces_id --att ../shared/data/att_faces --out runs/compare_faces
    edgecnn study faces --faces-run none --id-run runs/faces_id --att ../shared/data/att_faces --limit 1 --formats tflite --out /tmp/cmp
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from edge_cnn.errors import EdgeCNNError
from edge_cnn.formats import embedded_formats
from edge_cnn.studies.shared import (add_runtime_options, ensure_export, first_per_class, load_cnns, median_latency_ms,
                                     one_line_errors, study_parser, write_report)

COLUMNS = ["Task", "Method", "Images", "Accuracy (%)", "Latency p50 (ms/image)", "Latency input",
           "Model-only p50 (ms/image)"]
FACE_TASK = "face vs non-face"
ID_TASK = "identification"


def read_grey(path: str) -> np.ndarray:
    """The image file as uint8 grey at its own size (what Haar and the CNN's latency start from)."""
    from edge_cnn.errors import ImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None


def row(task: str, method: str, correct: np.ndarray, latency_ms: float, latency_input: str,
        model_only_ms: float | None = None) -> dict:
    return {"Task": task, "Method": method, "Images": int(len(correct)),
            "Accuracy (%)": round(100 * float(np.mean(correct)), 2),
            "Latency p50 (ms/image)": latency_ms, "Latency input": latency_input,
            "Model-only p50 (ms/image)": model_only_ms}


def cnn_rows(task: str, run: Path, images: list[np.ndarray], truth: np.ndarray, formats: Sequence[str], threads: int,
             timing_runs: int) -> list[dict]:
    """One row per exported CNN variant: top-1 accuracy of ``images`` (uint8, file size) against class indices."""
    from edge_cnn.run_dir import RunDir

    labels = RunDir(run).labels()
    rows = []
    for method, predictor in load_cnns(ensure_export(run, formats), formats, threads).items():
        if predictor.labels != labels:
            raise EdgeCNNError(f"{run}/export has labels {predictor.labels[:3]}... not the run's: re-export it")
        predicted = predictor.probabilities(images).argmax(axis=1)
        latency = median_latency_ms(predictor.probabilities, images, timing_runs)
        singles = [predictor.preprocess([image]) for image in images[:timing_runs]]
        model_only = median_latency_ms(lambda batch: predictor.probabilities(batch, preprocessed=True), singles, timing_runs)
        rows.append(row(task, method, predicted == truth, latency, "uint8 grey image, batch 1", model_only))
    return rows


def face_rows(run: Path, limit: int | None, formats: Sequence[str], threads: int, timing_runs: int) -> list[dict]:
    """(a): the Haar cascade and the run's CNNs on the face run's test split."""
    from edge_cnn.baselines import HaarFaceDetector
    from edge_cnn.run_dir import RunDir

    run_dir = RunDir(run)
    labels = run_dir.labels()
    if "face" not in labels:
        raise EdgeCNNError(f"{run_dir.labels_path} has no 'face' class: pass a face vs non-face run")
    items = first_per_class(run_dir.read_split("test"), limit)
    images = [read_grey(path) for path, _ in items]
    truth = np.array([label for _, label in items])
    print(f"face vs non-face: {len(items)} test images from {run_dir.split_path('test')}", flush=True)
    haar = HaarFaceDetector()
    found = np.array([haar.detections(image) > 0 for image in images])
    rows = [row(FACE_TASK, "Haar cascade (OpenCV)", found == (truth == labels.index("face")),
                median_latency_ms(haar.detections, images, timing_runs), "uint8 grey image")]
    return rows + cnn_rows(FACE_TASK, run, images, truth, formats, threads, timing_runs)


def on_disk(path: str, att: Path) -> str:
    """The split's path, or the same PERSON/FILE under ``--att`` when the run was trained elsewhere."""
    moved = att / Path(path).parent.name / Path(path).name
    if moved.is_file():
        return str(moved)
    if Path(path).is_file():
        return path
    raise EdgeCNNError(f"{path} is missing and so is {moved}: pass the AT&T folder the id run used as --att")


def id_rows(run: Path, att: Path, limit: int | None, components: int, formats: Sequence[str], threads: int,
            timing_runs: int) -> list[dict]:
    """(b): Eigenfaces fitted on the id run's train + val images and the run's CNNs on its test split."""
    from edge_cnn.baselines import Eigenfaces
    from edge_cnn.run_dir import RunDir

    run_dir = RunDir(run)
    spec = run_dir.preprocess()
    gallery = [(on_disk(p, att), label) for p, label in run_dir.read_split("train") + run_dir.read_split("val")]
    tests = [(on_disk(p, att), label) for p, label in first_per_class(run_dir.read_split("test"), limit)]
    print(f"identification: Eigenfaces on {len(gallery)} train+val images, {len(tests)} test images", flush=True)
    eigenfaces = Eigenfaces(components).fit(np.stack([spec.load_image(p) for p, _ in gallery]),
                                            [label for _, label in gallery])
    images = [read_grey(path) for path, _ in tests]
    truth = np.array([label for _, label in tests])
    identify = lambda image: eigenfaces.predict(spec.load_image(image)[None])  # noqa: E731
    predicted = np.concatenate([identify(image) for image in images])
    size = f"{spec.height}x{spec.width}"
    rows = [row(ID_TASK, f"Eigenfaces ({eigenfaces.basis_.shape[0]} components, {size} grey)", predicted == truth,
                median_latency_ms(identify, images, timing_runs), "uint8 grey image")]
    return rows + cnn_rows(ID_TASK, run, images, truth, formats, threads, timing_runs)


def compare(faces_run: Path | None, id_run: Path, att: Path, limit: int | None = None, components: int = 50,
            formats: Sequence[str] = embedded_formats(), threads: int = 1, timing_runs: int = 200) -> list[dict]:
    """The table's rows: (a) unless ``faces_run`` is None, then (b)."""
    import cv2

    if not att.is_dir():
        raise EdgeCNNError(f"--att {att} is not a folder: pass the AT&T faces folder (s01..s40)")
    cv2.setNumThreads(threads)
    rows = [] if faces_run is None else face_rows(faces_run, limit, formats, threads, timing_runs)
    return rows + id_rows(id_run, att, limit, components, formats, threads, timing_runs)


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--faces-run", required=True, help="face vs non-face run directory, or 'none' to skip (a)")
    parser.add_argument("--id-run", required=True, type=Path, help="identity run directory (the faces_id recipe's)")
    parser.add_argument("--att", required=True, type=Path, help="the AT&T folder (one sub-folder per person)")
    parser.add_argument("--limit", type=int, help="first N test images of each class (a quick run)")
    parser.add_argument("--components", type=int, default=50, help="Eigenfaces: PCA components [50]")
    add_runtime_options(parser, threads_help="threads for OpenCV and the CNN runtime [1]")
    parser.add_argument("--timing-runs", type=int, default=200, help="images timed one by one [200]")
    parser.add_argument("--out", required=True, type=Path, help="folder for compare_faces.{md,json}")
    args = parser.parse_args(argv)
    faces_run = None if args.faces_run.lower() == "none" else Path(args.faces_run)
    rows = compare(faces_run, args.id_run, args.att, args.limit, args.components, args.formats, args.threads,
                   args.timing_runs)
    facts = {"faces_run": args.faces_run, "id_run": str(args.id_run.resolve()), "att": str(args.att.resolve()),
             "limit": args.limit, "threads": args.threads}
    write_report(rows, facts, COLUMNS, "Faces: Haar / Eigenfaces vs CNN", args.out, "compare_faces")
    return 0
