"""Gallery of enrolled identities: one L2-normalised centroid of embeddings per person.

A gallery is tied to the embedding space it was enrolled in: the Keras model (the manifest's
source sha256) and the centre export subtracted from its features (the artifact's
``optimization["embedding"]``). Embeddings of another space cannot be compared, so mixing is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError, ImageError
from edge_cnn.io import atomic_path
from edge_cnn.preprocess import is_image_file

UNKNOWN = "unknown"
# Cosine similarity below which the nearest enrolled person is rejected as "unknown", for embeddings
# centred on the training mean (`edgecnn export --embedding`). Chosen with tools/enrollment_protocol.py
# (AT&T, faces_id recipe, 10 unseen people enrolled from 1, 2 and 3 images, splits of seeds 0, 1, 2:
# 630 probes): the equal-error point between genuine probes (cosine to their own centroid, median 0.90)
# and strangers (cosine to the nearest centroid of a gallery without them, median 0.56) is 0.733 fp32,
# 0.729 int8 (0.71 / 0.74 / 0.75 for k = 1 / 2 / 3), rounded to the nearest 0.05, which leans towards
# rejecting strangers: at 0.75, 83% of genuine probes are accepted and 89% of strangers rejected.
# With the recipe's later 60 epochs the per-split, per-k equal-error points are 0.65-0.79 (mean 0.71,
# TFLite fp32): 0.75 still sits inside that range, on the side of rejecting strangers.
# A larger gallery gives strangers a higher nearest score: calibrate --threshold on your own people.
DEFAULT_THRESHOLD = 0.75


@dataclasses.dataclass
class Gallery:
    names: list[str]
    centroids: np.ndarray  # (people, D), unit length
    counts: list[int]  # images enrolled per person
    source_sha256: str  # the Keras model the embeddings came from
    model: str = ""  # the model path used at enrollment, the default for identify
    centring: str = ""  # the export's record of the centre subtracted from the features (JSON), "" for none

    def save(self, path: str | os.PathLike) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # np.savez would append .npz to the temporary name
                np.savez(
                    handle,
                    names=np.array(self.names),
                    centroids=self.centroids.astype(np.float32),
                    counts=np.array(self.counts),
                    source_sha256=np.array(self.source_sha256),
                    model=np.array(self.model),
                    centring=np.array(self.centring),
                )
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        path = Path(path)
        if not path.is_file():
            raise EdgeCNNError(f"gallery {path} does not exist: create it with `edgecnn face enroll`")
        try:
            with np.load(path, allow_pickle=False) as data:
                gallery = cls(
                    names=[str(n) for n in data["names"]],
                    centroids=data["centroids"],
                    counts=[int(c) for c in data["counts"]],
                    source_sha256=str(data["source_sha256"]),
                    model=str(data["model"]),
                    centring=str(data["centring"]) if "centring" in data else "",
                )
        except (OSError, KeyError, ValueError) as exc:
            raise EdgeCNNError(f"gallery {path} is not an edgecnn gallery ({exc}): enroll again") from None
        if not gallery.names:
            raise EdgeCNNError(f"gallery {path} is empty: enroll at least one person")
        return gallery

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


def person_folders(folder: Path) -> dict[str, list[Path]]:
    """{person: sorted image files} for every visible sub-folder of ``folder`` that holds images."""
    people = {
        d.name: sorted(p for p in d.iterdir() if p.is_file() and is_image_file(p))
        for d in sorted(folder.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }
    return {name: files for name, files in people.items() if files}


def _people(gallery_dir: Path) -> dict[str, list[Path]]:
    if not gallery_dir.is_dir():
        raise EdgeCNNError(f"gallery folder {gallery_dir} does not exist: one sub-folder of images per person")
    people = person_folders(gallery_dir)
    if not people:
        raise EdgeCNNError(f"gallery folder {gallery_dir} has no person folders with images: use GALLERY/<name>/*.png")
    return people


def enroll(predictor: Any, gallery_dir: str | os.PathLike, model: str = "") -> tuple[Gallery, list[dict]]:
    """Embed every person's images (``gallery_dir/<name>/*``); returns the gallery and skipped files."""
    names, centroids, counts, skipped = [], [], [], []
    for name, files in _people(Path(gallery_dir)).items():
        vectors = []
        for file in files:
            try:
                vectors.append(predictor.embed(file))
            except ImageError as exc:
                skipped.append({"path": str(file), "reason": str(exc)})
        if not vectors:
            skipped.append({"path": str(Path(gallery_dir) / name), "reason": "no readable image: person not enrolled"})
            continue
        centroid = np.mean(vectors, axis=0)
        names.append(name)
        centroids.append(centroid / max(np.linalg.norm(centroid), 1e-12))
        counts.append(len(vectors))
    if not names:
        raise EdgeCNNError(f"nobody could be enrolled from {gallery_dir}: every image failed to read")
    gallery = Gallery(names, np.stack(centroids).astype(np.float32), counts, predictor.manifest.source_sha256, model,
                      embedding_centring(predictor))
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
