"""One-to-one face verification: are two photos the same person? (``edgecnn face verify``)

The answer is only as good as its threshold, and a cosine threshold depends on the model and its
precision, so the default is the one ``edgecnn evaluate EXPORT --protocol lfw`` measured for this very
artifact and stored in its manifest (``Artifact.verification``). Without one the caller must pass a
threshold: a guessed default would silently accept strangers or reject the same person.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError


@dataclasses.dataclass(frozen=True)
class Verdict:
    same: bool
    cosine: float
    threshold: float
    threshold_source: str  # "--threshold" or "manifest (lfw, 99.1% ± 0.4)"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def operating_threshold(predictor: Any, threshold: float | None = None) -> tuple[float, str]:
    """(threshold, where it came from): ``threshold`` when given, else the artifact's measured one."""
    if threshold is not None:
        if not math.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
            raise EdgeCNNError(f"--threshold {threshold} is not a cosine similarity in [-1, 1]")
        return float(threshold), "--threshold"
    measured = getattr(predictor.artifact, "verification", None)
    if measured is None:
        raise EdgeCNNError(
            f"{predictor.model_path} has no verification threshold in its manifest: measure one with "
            f"`edgecnn evaluate {predictor.model_path.parent} --protocol lfw --pairs pairs.txt --data DIR`, "
            "or pass --threshold"
        )
    accuracy = f"{100 * measured.mean_accuracy:.1f}% ± {100 * measured.std_accuracy:.1f}"
    return measured.threshold, f"manifest ({measured.protocol}, {accuracy})"


def verify(predictor: Any, image_a: str | os.PathLike, image_b: str | os.PathLike,
           threshold: float | None = None) -> Verdict:
    """Same person when the cosine of the two embeddings is >= the operating threshold."""
    value, origin = operating_threshold(predictor, threshold)
    vectors = np.asarray(predictor.embed([image_a, image_b]), dtype=np.float64)
    cosine = float(np.dot(vectors[0], vectors[1]) / (np.linalg.norm(vectors[0]) * np.linalg.norm(vectors[1])))
    return Verdict(cosine >= value, cosine, value, origin)
