"""Faces in the wild: raw pixels, Eigenfaces, LBP histograms (and an edgecnn export, dlib) on LFW View 2.

Why: an embedding model is worth its training only if it beats what needs none, on the same pairs and
crops and under the same protocol (10 person-disjoint folds, each fold's threshold chosen on the other
nine; ``edge_cnn.tasks.verification``). Every method scores a pair by a similarity, higher = more alike:

- raw pixels: grey, the central 80x100 of the 112x112 crop resized to 48x60, cosine;
- Eigenfaces (Turk & Pentland 1991): the same 48x60 grey vectors, PCA with 100 components, whitened (each
  component divided by its standard deviation), cosine; the PCA of each test fold is fitted on the images
  of the nine other folds only, and the threshold is chosen on those folds' pairs scored by that PCA;
- LBP (Ahonen et al. 2006): scikit-image ``local_binary_pattern`` (8 neighbours, radius 2, the 59 uniform
  "nri_uniform" codes) of the grey 112x112 crop, one normalised histogram per cell of a 7x7 grid,
  similarity = minus the chi-square distance sum((a - b)^2 / (a + b));
- ``--export DIR``: every fp32/int8 artifact with an embedding output, through the embedded runtime
  (as ``edgecnn evaluate --protocol lfw``), cosine; with ``--flip`` also each artifact's flip test (the
  face and its mirror embedded and added: twice the time per face);
- dlib's ResNet through ``face_recognition`` (128-d, the whole crop as the face box), minus the Euclidean
  distance; the row says "skipped" where the package is absent.

``--test-folds 6-10`` evaluates every method on those folds only, each fold's threshold chosen on the
other evaluated folds (the two-way protocol of ``edgecnn evaluate``): for an export trained with the
people of the other folds. Eigenfaces' PCA is still fitted on the images of every fold but the tested one.

ms per face: wall time of decoding the JPEG and computing its features, in batches of 128, one process,
divided by the images (the fitted PCA's projection included; its fitting not). Model size: what a device
must store (PCA: mean + 100 components as float32; export: the artifact file). The machine and versions
are in the report.

    edgecnn study faces_lfw --pairs ../shared/data/lfw/pairs.txt --data ../shared/data/lfw/images --out runs/faces_lfw
    edgecnn study faces_lfw --pairs ../shared/data/lfw/pairs.txt --data ../shared/data/lfw/images --export runs/faces/export \\
        --test-folds 6-10 --flip --out runs/faces_lfw
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from edge_cnn.data.pairs import Pairs, parse_folds, read_pairs
from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.face.lfw import ModelResult, export_embedders, pair_scores, unique_images, verify_scores
from edge_cnn.studies.shared import one_line_errors, study_parser, write_report
from edge_cnn.tasks.verification import best_threshold, verification_protocol

COLUMNS = ["Method", "Accuracy (%)", "Std (pp)", "TAR@FAR 1e-3 (%)", "AUC", "ms per face", "Model size (MB)", "Note"]
CROP = (16, 6, 96, 106)  # (left, top, right, bottom) of the 112x112 crop: 80x100 around the face
RAW_SIZE = (48, 60)  # width, height of the raw-pixel and Eigenfaces vectors
COMPONENTS = 100
LBP_POINTS, LBP_RADIUS, LBP_BINS = 8, 2, 59  # "nri_uniform": 58 uniform codes + 1 for the rest
LBP_GRID = 7
BATCH = 128


def read_grey(path: str, box: tuple[int, int, int, int] | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image as float32 grey, cropped to ``box`` and resized to ``size`` (width, height) when given."""
    try:
        with Image.open(path) as image:
            grey = image.convert("L")
            if box is not None:
                grey = grey.crop(box)
            if size is not None:
                grey = grey.resize(size, Image.BILINEAR)
            return np.asarray(grey, dtype=np.float32)
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc}: replace the file or fix the pairs") from None


def raw_pixels(paths: Sequence[str]) -> np.ndarray:
    """(N, 48 * 60) grey pixel vectors of the central face region."""
    return np.stack([read_grey(path, CROP, RAW_SIZE).reshape(-1) for path in paths])


def lbp_histograms(paths: Sequence[str], grid: int = LBP_GRID) -> np.ndarray:
    """(N, grid * grid * 59): per cell, the normalised histogram of the uniform LBP codes."""
    from skimage.feature import local_binary_pattern

    rows = []
    for path in paths:
        grey = read_grey(path).astype(np.uint8)  # integer pixels: LBP compares neighbours exactly
        codes = local_binary_pattern(grey, LBP_POINTS, LBP_RADIUS, method="nri_uniform").astype(np.int64)
        height, width = codes.shape
        cells = []
        for i in range(grid):
            for j in range(grid):
                cell = codes[i * height // grid : (i + 1) * height // grid, j * width // grid : (j + 1) * width // grid]
                cells.append(np.bincount(cell.reshape(-1), minlength=LBP_BINS)[:LBP_BINS] / cell.size)
        rows.append(np.concatenate(cells))
    return np.stack(rows).astype(np.float32)


def minus_chi_square(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise -sum((a - b)^2 / (a + b)) over the bins where a + b > 0: a similarity (0 for equal rows)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    total = a + b
    terms = np.divide((a - b) ** 2, total, out=np.zeros_like(total), where=total > 0)
    return -terms.sum(axis=1)


def row(method: str, result: ModelResult, size_bytes: float | None, note: str = "") -> dict:
    verification = result.result
    tar = next(point.tar for point in verification.operating_points if point.far_target == 1e-3)
    return {"Method": method, "Accuracy (%)": round(100 * verification.mean_accuracy, 2),
            "Std (pp)": round(100 * verification.std_accuracy, 2), "TAR@FAR 1e-3 (%)": round(100 * tar, 1),
            "AUC": round(verification.auc, 4), "ms per face": round(result.ms_per_face, 3),
            "Model size (MB)": None if size_bytes is None else round(size_bytes / 1e6, 3), "Note": note}


def skipped_row(method: str, note: str) -> dict:
    return {"Method": method, "Note": note}


def scored(method: str, pairs: Pairs, features, similarity=None, test_folds: Sequence[int] | None = None) -> ModelResult:
    """The protocol on a training-free method: features of every image once, pair similarities, the folds."""
    options = {"similarity": similarity} if similarity is not None else {}
    scores, seconds = pair_scores(pairs, features, BATCH, **options)
    return verify_scores(method, method, pairs, scores, test_folds, 1000 * seconds, None)


def eigenfaces(pairs: Pairs, components: int = COMPONENTS, test_folds: Sequence[int] | None = None) -> ModelResult:
    """Whitened PCA fitted per test fold on the other folds' images (module docstring)."""
    from edge_cnn.baselines import Eigenfaces

    images = unique_images(pairs)
    index = {path: row for row, path in enumerate(images)}
    start = time.perf_counter()
    pixels = raw_pixels(images)
    decode_seconds = (time.perf_counter() - start) / len(images)
    same = np.array([pair.same for pair in pairs])
    folds = np.array([pair.fold for pair in pairs])
    first = np.array([index[pair.path_a] for pair in pairs])
    second = np.array([index[pair.path_b] for pair in pairs])
    out_of_fold = np.zeros(len(pairs))
    accuracies, thresholds, project_seconds = [], [], []
    tested = list(range(1, pairs.folds + 1)) if test_folds is None else sorted(test_folds)
    for fold in tested:
        training = folds != fold
        fitted = np.unique(np.concatenate([first[training], second[training]]))
        if len(fitted) <= components:
            raise EdgeCNNError(f"Eigenfaces with {components} components needs more than {components} training "
                               f"images per fold, the pairs give {len(fitted)}: pass --components below {len(fitted)}")
        model = Eigenfaces(components).fit(pixels[fitted], np.zeros(len(fitted)))
        scale = model.gallery_.std(axis=0)  # the training faces' spread per component: whitening
        tic = time.perf_counter()
        codes = model.project(pixels) / scale
        project_seconds.append((time.perf_counter() - tic) / len(images))
        codes /= np.linalg.norm(codes, axis=1, keepdims=True)
        scores = np.sum(codes[first] * codes[second], axis=1)
        choosing = training & np.isin(folds, tested)  # the threshold comes from the other evaluated folds
        threshold, _ = best_threshold(scores[choosing], same[choosing])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((scores[~training] >= threshold) == same[~training])))
        out_of_fold[~training] = scores[~training]
    pooled = verification_protocol(out_of_fold, same, folds, test_folds)  # the ROC of the out-of-fold scores
    std = float(np.std(accuracies, ddof=1))
    result = dataclasses.replace(pooled, fold_accuracy=accuracies, fold_threshold=thresholds,
                                 mean_accuracy=float(np.mean(accuracies)), std_accuracy=std,
                                 standard_error=std / np.sqrt(len(accuracies)))
    evaluated = np.isin(folds, tested)
    threshold, _ = best_threshold(out_of_fold[evaluated], same[evaluated])
    ms = 1000 * (decode_seconds + float(np.mean(project_seconds)))
    return ModelResult("eigenfaces", f"Eigenfaces (PCA {components}, whitened)", result, threshold, ms, None)


def eigenfaces_bytes(components: int = COMPONENTS) -> int:
    """Mean + components + per-component scale, float32: what a device stores."""
    dimensions = RAW_SIZE[0] * RAW_SIZE[1]
    return 4 * (dimensions + components * dimensions + components)


def dlib_rows(pairs: Pairs, test_folds: Sequence[int] | None = None) -> list[dict]:
    """dlib's ResNet via ``face_recognition`` when installed; a skipped row otherwise."""
    from PIL import ImageFile

    method = "dlib ResNet (face_recognition)"
    strict = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import face_recognition
        import face_recognition_models
    except ImportError:
        return [skipped_row(method, "skipped: face_recognition is not installed "
                                    "(pip install face_recognition_models dlib-bin face_recognition)")]
    finally:  # importing face_recognition makes Pillow accept truncated images process-wide; the runtime must not
        ImageFile.LOAD_TRUNCATED_IMAGES = strict

    def encode(paths: Sequence[str]) -> np.ndarray:
        vectors = []
        for path in paths:
            image = face_recognition.load_image_file(path)
            height, width = image.shape[:2]
            vectors.append(face_recognition.face_encodings(image, known_face_locations=[(0, width, height, 0)])[0])
        return np.stack(vectors)

    def minus_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1)

    result = scored(method, pairs, encode, minus_distance, test_folds)
    size = Path(face_recognition_models.face_recognition_model_location()).stat().st_size
    return [row(method, result, size, "whole crop as the face box; minus Euclidean distance")]


def compare(pairs_txt: Path, data: Path, export: Path | None = None, components: int = COMPONENTS,
            with_dlib: bool = True, test_folds: Sequence[int] | None = None, flip: bool = False) -> list[dict]:
    """Every method's row on the pairs (module docstring)."""
    pairs = read_pairs(pairs_txt, data)
    rows = [row("Raw pixels (48x60 grey, cosine)", scored("raw pixels", pairs, raw_pixels, None, test_folds), 0),
            row(f"Eigenfaces (PCA {components}, whitened, cosine)", eigenfaces(pairs, components, test_folds),
                eigenfaces_bytes(components), "PCA fitted per fold on the other folds' images"),
            row(f"LBP {LBP_GRID}x{LBP_GRID} cells (chi-square)",
                scored("lbp", pairs, lbp_histograms, minus_chi_square, test_folds), 0)]
    if export is not None:
        for mirrored in (False, True) if flip else (False,):
            for name, kind, size, embed in export_embedders(export, mirrored):
                scores, seconds = pair_scores(pairs, embed, BATCH)
                result = verify_scores(name, kind, pairs, scores, test_folds, 1000 * seconds, size)
                rows.append(row(f"edgecnn {kind} ({name})", result, size, "embedding, cosine"))
    if with_dlib:
        rows.extend(dlib_rows(pairs, test_folds))
    return rows


def facts(pairs_txt: Path, data: Path, export: Path | None, test_folds: Sequence[int] | None) -> dict:
    from edge_cnn.machine import machine_info, package_version

    return {"pairs": str(pairs_txt.resolve()), "data": str(data.resolve()),
            "export": None if export is None else str(export.resolve()),
            "protocol": "LFW View 2, 10 folds" if test_folds is None else f"LFW View 2, test folds {list(test_folds)}",
            "machine": machine_info(), "scikit-image": package_version("scikit-image"),
            "pillow": package_version("pillow")}


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--pairs", required=True, type=Path, help="the LFW View 2 pairs.txt")
    parser.add_argument("--data", required=True, type=Path, help="the folder of one image folder per person")
    parser.add_argument("--export", type=Path, help="an export folder with an embedding output (export --embedding)")
    parser.add_argument("--components", type=int, default=COMPONENTS, help=f"Eigenfaces: PCA components [{COMPONENTS}]")
    parser.add_argument("--no-dlib", action="store_true", help="leave out the face_recognition (dlib) row")
    parser.add_argument("--test-folds", help="evaluate only these folds (e.g. 6-10): for an export trained on the "
                        "other folds' people [all 10]")
    parser.add_argument("--flip", action="store_true", help="also each artifact's flip test (face + mirror)")
    parser.add_argument("--out", required=True, type=Path, help="folder for faces_lfw.{md,json}")
    args = parser.parse_args(argv)
    if args.components < 1:
        raise EdgeCNNError(f"--components {args.components} must be at least 1")
    from edge_cnn.io import ensure_writable_dir

    ensure_writable_dir(args.out)
    test_folds = parse_folds(args.test_folds) if args.test_folds else None
    if args.flip and args.export is None:
        raise EdgeCNNError("--flip measures an export's flip test: pass --export DIR too, or drop --flip")
    rows = compare(args.pairs, args.data, args.export, args.components, not args.no_dlib, test_folds, args.flip)
    information = facts(args.pairs, args.data, args.export, test_folds)
    machine = information["machine"]
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, flags {machine['cpu_flags']}")
    title = "LFW View 2 (10 folds)" if test_folds is None else f"LFW View 2 (test folds {args.test_folds})"
    write_report(rows, information, COLUMNS, f"{title}: baselines", args.out, "faces_lfw")
    return 0
