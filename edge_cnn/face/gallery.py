"""Gallery of enrolled identities: one L2-normalised centroid of embeddings per person.

A gallery is tied to the embedding space it was enrolled in: the Keras model (the manifest's
source sha256) and the centre export subtracted from its features (the artifact's
``optimization["embedding"]``). Embeddings of another space cannot be compared, so mixing is refused.
It records the model file's absolute path and sha256, so ``identify`` finds it from any folder and
refuses it once the file changed. A gallery file is checked whole on load (a truncated or edited
file is one clear error, never a wrong answer).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.io import atomic_path, sha256_file
from edge_cnn.preprocess import IMAGE_SUFFIXES, is_image_file

UNKNOWN = "unknown"
# Cosine similarity below which the nearest enrolled person is rejected as "unknown", for embeddings
# centred on the training mean (`edgecnn export --embedding`). Chosen with `edgecnn study enrollment`
# (AT&T, faces_id recipe, 10 unseen people enrolled from 1, 2 and 3 images, splits of seeds 0, 1, 2:
# 630 probes): the equal-error point between genuine probes (cosine to their own centroid, median 0.90)
# and strangers (cosine to the nearest centroid of a gallery without them, median 0.56) is 0.733 fp32,
# 0.729 int8 (0.71 / 0.74 / 0.75 for k = 1 / 2 / 3), rounded to the nearest 0.05, which leans towards
# rejecting strangers: at 0.75, 83% of genuine probes are accepted and 89% of strangers rejected.
# With the recipe's later 60 epochs the per-split, per-k equal-error points are 0.65-0.79 (mean 0.71,
# TFLite fp32): 0.75 still sits inside that range, on the side of rejecting strangers.
# A larger gallery gives strangers a higher nearest score: calibrate --threshold on your own people.
DEFAULT_THRESHOLD = 0.75


# What `np.savez` stored per field: the required ones, then the optional ones (galleries of older
# versions lack them). Strings are 0-d unicode arrays.
REQUIRED_KEYS = ("names", "centroids", "counts", "source_sha256")
TEXT_KEYS = ("source_sha256", "model", "model_sha256", "centring")
REENROLL = "re-run `edgecnn face enroll` to rebuild it"


@dataclasses.dataclass
class Gallery:
    names: list[str]
    centroids: np.ndarray  # (people, D), unit length
    counts: list[int]  # images enrolled per person
    source_sha256: str  # the Keras model the embeddings came from
    model: str = ""  # the model file used at enrollment (absolute), the default for identify
    centring: str = ""  # the export's record of the centre subtracted from the features (JSON), "" for none
    model_sha256: str = ""  # sha256 of that file at enrollment, "" in galleries of older versions

    def save(self, path: str | os.PathLike) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # np.savez would append .npz to the temporary name
                np.savez(
                    handle,
                    names=np.array(self.names, dtype=str),
                    centroids=self.centroids.astype(np.float32),
                    counts=np.array(self.counts, dtype=np.int64),
                    **{key: np.array(getattr(self, key), dtype=str) for key in TEXT_KEYS},
                )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        path = Path(path)
        if not path.is_file():
            raise EdgeCNNError(f"gallery {path} does not exist: create it with `edgecnn face enroll`")
        try:
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.ndarray):  # a .npy file: one array, none of the gallery's keys
                arrays = {}
            else:
                with loaded:
                    arrays = {key: loaded[key] for key in loaded.files}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
            raise EdgeCNNError(f"gallery {path} is truncated, corrupt or not an edgecnn gallery ({exc}): {REENROLL}") from None
        problem = _gallery_problem(arrays)
        if problem:
            raise EdgeCNNError(f"gallery {path} is not a valid edgecnn gallery ({problem}): {REENROLL}")
        return cls(
            names=[str(n) for n in arrays["names"]],
            centroids=arrays["centroids"].astype(np.float32),
            counts=[int(c) for c in arrays["counts"]],
            **{key: str(arrays[key]) for key in TEXT_KEYS if key in arrays},
        )

    def enrolled_model(self) -> str:
        """The model file the gallery was enrolled with (identify's default), refused when it is gone
        or was replaced since: the embeddings of another model cannot be compared."""
        if not self.model:
            raise EdgeCNNError("the gallery records no model (it was enrolled from Python without one): pass --model")
        if not self.model_sha256:  # an older gallery: its model path as it was given
            return self.model
        if not Path(self.model).is_file():
            raise EdgeCNNError(
                f"the gallery's model {self.model} no longer exists: pass --model with the export it was enrolled "
                f"with, or re-enroll with `edgecnn face enroll`"
            )
        current = sha256_file(self.model)
        if current != self.model_sha256:
            raise EdgeCNNError(
                f"the gallery's model {self.model} changed since enrollment (sha256 {self.model_sha256[:12]} then, "
                f"{current[:12]} now): the gallery was enrolled with another model; re-enroll with `edgecnn face enroll`"
            )
        return self.model

    def check_model(self, predictor: Any) -> None:
        source = predictor.manifest.source_sha256
        if source != self.source_sha256:
            raise EdgeCNNError(
                f"the gallery was enrolled with another model (source {self.source_sha256[:12]}, this model "
                f"{source[:12]}): embeddings of different models cannot be compared; enroll again with this model"
            )
        if not _same_centring(self.centring, embedding_centring(predictor)):
            raise EdgeCNNError(
                f"the gallery was enrolled with another export of this model (centring {self.centring or 'none'}, "
                f"this artifact {embedding_centring(predictor) or 'none'}): its embeddings are centred differently; "
                "enroll again with this export"
            )


def _gallery_problem(arrays: dict[str, np.ndarray]) -> str | None:
    """What makes loaded arrays no gallery (missing keys, wrong types, counts that disagree, NaN), or None."""
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        return f"missing {', '.join(missing)}"
    names, centroids, counts = arrays["names"], arrays["centroids"], arrays["counts"]
    wrong_text = [key for key in TEXT_KEYS if key in arrays and (arrays[key].ndim != 0 or arrays[key].dtype.kind != "U")]
    if wrong_text:
        return f"{', '.join(wrong_text)} not text"
    if names.ndim != 1 or names.dtype.kind != "U":
        return f"names are {names.dtype} of shape {names.shape}, not a list of text"
    if centroids.ndim != 2 or centroids.dtype.kind != "f" or centroids.shape[1] == 0:
        return f"centroids are {centroids.dtype} of shape {centroids.shape}, not (people, embedding size) floats"
    if counts.ndim != 1 or counts.dtype.kind not in "iu":
        return f"counts are {counts.dtype} of shape {counts.shape}, not integers"
    if not len(names) == len(centroids) == len(counts):
        return f"{len(names)} names, {len(centroids)} centroids and {len(counts)} counts"
    if len(names) == 0:
        return "no person enrolled"
    if len(set(names.tolist())) != len(names):
        return "a name is enrolled twice"
    if not np.all(np.isfinite(centroids)):
        return "centroids hold NaN or infinity"
    if not np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-3) or np.any(counts < 1):
        return "centroids not of unit length or counts below 1"
    return None


def embedding_centring(predictor: Any) -> str:
    """The centre an artifact subtracts from its features, as recorded by export (JSON), "" for none:
    the same Keras model exported uncentred, or centred on other images, embeds into another space."""
    artifact = getattr(predictor, "artifact", None)
    record = getattr(artifact, "optimization", {}).get("embedding") if artifact is not None else None
    return json.dumps(record, sort_keys=True) if record else ""


def _same_centring(enrolled: str, current: str) -> bool:
    """Equal records, the centre's norm within float noise (a re-export of the same run may differ in the
    last digits of its floating-point sums)."""
    if not enrolled or not current:
        return enrolled == current
    a, b = json.loads(enrolled), json.loads(current)
    norms = a.pop("centre_norm", 0.0), b.pop("centre_norm", 0.0)
    return a == b and abs(norms[0] - norms[1]) <= 1e-4 * max(abs(norms[0]), abs(norms[1]), 1.0)


@dataclasses.dataclass
class Identity:
    path: str | None
    identity: str  # an enrolled name, or "unknown" below the threshold
    score: float  # cosine similarity to the nearest enrolled person
    nearest: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _person_images(folder: Path) -> dict[str, list[Path]]:
    """{person: sorted image files} for every visible sub-folder of ``folder``, empty ones included."""
    return {
        d.name: sorted(p for p in d.iterdir() if p.is_file() and is_image_file(p))
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def person_folders(folder: Path) -> dict[str, list[Path]]:
    """{person: sorted image files} for every visible sub-folder of ``folder`` that holds images."""
    return {name: files for name, files in _person_images(folder).items() if files}


def _people(gallery_dir: Path) -> dict[str, list[Path]]:
    if not gallery_dir.is_dir():
        raise EdgeCNNError(f"gallery folder {gallery_dir} does not exist: one sub-folder of images per person")
    people = _person_images(gallery_dir)
    if not any(people.values()):
        raise EdgeCNNError(f"gallery folder {gallery_dir} has no person folders with images: use GALLERY/<name>/*.png")
    return people


def enroll(predictor: Any, gallery_dir: str | os.PathLike, model: str | os.PathLike = "") -> tuple[Gallery, list[dict]]:
    """Embed every person's images (``gallery_dir/<name>/*``); returns the gallery and the skipped
    inputs (unreadable images, person folders without a readable image), each with the reason.

    ``model`` is the model file the embeddings come from: the gallery records its absolute path and
    sha256, identify's default model.
    """
    names, centroids, counts, skipped = [], [], [], []
    for name, files in _people(Path(gallery_dir)).items():
        vectors = []
        for file in files:
            try:
                vectors.append(predictor.embed(file))
            except ImageError as exc:
                skipped.append({"path": str(file), "reason": str(exc)})
        if not vectors:
            folder = Path(gallery_dir) / name
            skipped.append({"path": str(folder), "reason": f"person folder {folder} has no readable image "
                            f"({', '.join(IMAGE_SUFFIXES)}): add images of {name} or remove the folder; not enrolled"})
            continue
        centroid = np.mean(vectors, axis=0)
        names.append(name)
        centroids.append(centroid / max(np.linalg.norm(centroid), 1e-12))
        counts.append(len(vectors))
    if not names:
        raise EdgeCNNError(f"nobody could be enrolled from {gallery_dir}: no image could be read, e.g. {skipped[0]['reason']}")
    gallery = Gallery(names, np.stack(centroids).astype(np.float32), counts, predictor.manifest.source_sha256,
                      str(Path(model).resolve()) if model else "", embedding_centring(predictor),
                      sha256_file(model) if model else "")
    return gallery, skipped


def identify(
    predictor: Any, gallery: Gallery, images: Sequence[Any], threshold: float = DEFAULT_THRESHOLD
) -> list[Identity]:
    """Nearest enrolled person by cosine similarity; below ``threshold`` the identity is 'unknown'."""
    gallery.check_model(predictor)
    vectors = np.atleast_2d(predictor.embed(list(images)))
    if vectors.shape[1] != gallery.centroids.shape[1]:
        raise EdgeCNNError(
            f"embeddings have {vectors.shape[1]} values but the gallery's have {gallery.centroids.shape[1]}: enroll again"
        )
    similarity = vectors @ gallery.centroids.T
    best = similarity.argmax(axis=1)
    results = []
    for image, index, row in zip(images, best, similarity):
        score = float(row[index])
        nearest = gallery.names[index]
        path = str(image) if isinstance(image, (str, os.PathLike)) else None
        results.append(Identity(path, nearest if score >= threshold else UNKNOWN, score, nearest))
    return results
