"""The face-verification protocol of LFW View 2: per-fold accuracy with thresholds never chosen on the
fold they are tested on, plus the ROC and TAR at fixed FAR over the pooled pairs.

Accuracy on the test fold is only an estimate of unseen data when its threshold comes from the other
folds; choosing it on the test fold itself inflates the score. The numbers reported here follow one
set of conventions, stated once so results are comparable:

- A pair is declared "same person" when its score is ``>= threshold`` (scores are similarities,
  e.g. cosine: higher means more alike).
- Per test fold, the threshold maximises accuracy on the pairs of the other evaluated folds. The
  candidates are the midpoints between consecutive distinct training scores plus one below the lowest
  and one above the highest (lowest - 1, highest + 1); among equally accurate candidates the lowest wins.
- ``std_accuracy`` is the sample standard deviation over the test folds (ddof=1, the LFW README's
  sigma); ``standard_error`` is std / sqrt(folds).
- ROC: over all evaluated pairs, one point per distinct score t (accept score >= t), from (0, 0)
  (threshold highest + 1) to (1, 1). FAR = accepted impostor pairs / impostor pairs; TAR = accepted
  genuine pairs / genuine pairs.
- TAR at FAR x: the lowest threshold whose FAR on the impostor pairs is at most x (the ROC point with
  the largest FPR <= x), and the TAR there. With N impostor pairs FAR moves in steps of 1/N: below
  1/N only zero false accepts qualify (3000 LFW impostors: FAR 1e-3 allows 3 false accepts).

The "two-way" variant (``two_way_protocol``) evaluates only some folds, e.g. 6-10 when folds 1-5's
people were used for training: each test fold's threshold comes from the other evaluated folds.
NumPy only: no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError

FAR_TARGETS = (1e-2, 1e-3)


@dataclasses.dataclass
class OperatingPoint:
    """TAR at a FAR target: the threshold chosen and the FAR it actually gives."""

    far_target: float
    threshold: float
    far: float
    tar: float


@dataclasses.dataclass
class VerificationResult:
    test_folds: list[int]
    fold_accuracy: list[float]  # per test fold, in the order of test_folds
    fold_threshold: list[float]  # chosen on the other evaluated folds
    mean_accuracy: float
    std_accuracy: float  # ddof=1
    standard_error: float
    fpr: np.ndarray  # ROC over all evaluated pairs, rising
    tpr: np.ndarray
    roc_threshold: np.ndarray  # accept score >= roc_threshold[i] gives (fpr[i], tpr[i])
    auc: float
    operating_points: list[OperatingPoint]
    genuine_pairs: int
    impostor_pairs: int

    def to_dict(self, with_roc: bool = False) -> dict[str, Any]:
        """JSON-ready summary; the ROC arrays only when asked (they hold one value per distinct score)."""
        summary = {
            "test_folds": self.test_folds,
            "fold_accuracy": self.fold_accuracy,
            "fold_threshold": self.fold_threshold,
            "mean_accuracy": self.mean_accuracy,
            "std_accuracy": self.std_accuracy,
            "standard_error": self.standard_error,
            "auc": self.auc,
            "tar_at_far": [dataclasses.asdict(point) for point in self.operating_points],
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
        }
        if with_roc:
            summary["roc"] = {"fpr": self.fpr.tolist(), "tpr": self.tpr.tolist(),
                              "threshold": self.roc_threshold.tolist()}
        return summary


def cosine_similarities(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays of embeddings."""
    a = np.asarray(embeddings_a, dtype=np.float64)
    b = np.asarray(embeddings_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise EdgeCNNError(f"embeddings of shapes {a.shape} and {b.shape}: pass two (pairs, dimensions) arrays "
                           "of the same shape, row i of each being pair i's two images")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise EdgeCNNError("an embedding is zero, NaN or infinite: check the model's output for those images")
    return np.sum(a * b, axis=1) / norms


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy): the accuracy-maximising threshold over these pairs (module conventions)."""
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2, [distinct[-1] + 1.0]])
    genuine = np.sort(scores[same])
    impostor = np.sort(scores[~same])
    accepted_genuine = len(genuine) - np.searchsorted(genuine, candidates, side="left")
    rejected_impostor = np.searchsorted(impostor, candidates, side="left")
    correct = accepted_genuine + rejected_impostor
    best = int(np.argmax(correct))
    return float(candidates[best]), float(correct[best] / len(scores))


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == same))


def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, threshold) with one point per distinct score, from (0, 0) to (1, 1)."""
    order = np.argsort(-scores, kind="stable")
    ranked, labels = scores[order], same[order]
    last_of_value = np.r_[ranked[1:] != ranked[:-1], True]  # the ROC steps once per distinct score
    accepted_genuine = np.cumsum(labels)[last_of_value]
    accepted_impostor = np.cumsum(~labels)[last_of_value]
    tpr = np.r_[0.0, accepted_genuine / max(int(labels.sum()), 1)]
    fpr = np.r_[0.0, accepted_impostor / max(int((~labels).sum()), 1)]
    thresholds = np.r_[ranked[0] + 1.0, ranked[last_of_value]]
    return fpr, tpr, thresholds


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, far_target: float) -> OperatingPoint:
    """The ROC point with the largest FAR <= ``far_target`` (the lowest such threshold, the highest TAR)."""
    index = int(np.searchsorted(fpr, far_target, side="right")) - 1  # fpr rises; fpr[0] == 0
    return OperatingPoint(float(far_target), float(thresholds[index]), float(fpr[index]), float(tpr[index]))


def verification_protocol(
    scores: Sequence[float],
    same: Sequence[bool],
    folds: Sequence[int],
    test_folds: Sequence[int] | None = None,
    far_targets: Sequence[float] = FAR_TARGETS,
) -> VerificationResult:
    """Per-fold accuracy of pairs with similarity ``scores``, labels ``same`` and fold ids ``folds``.

    ``test_folds`` None: every fold present is tested in turn, its threshold chosen on all the others
    (LFW View 2). Otherwise only those folds are evaluated, each with the threshold of the other
    evaluated folds; pairs of the remaining folds are ignored (the two-way variant). The ROC and TAR
    at FAR pool the evaluated pairs.
    """
    scores_all, same_all, folds_all = _check_inputs(scores, same, folds)
    present = sorted(int(fold) for fold in np.unique(folds_all))
    tested = present if test_folds is None else sorted(set(int(fold) for fold in test_folds))
    missing = sorted(set(tested) - set(present))
    if missing:
        raise EdgeCNNError(f"test fold(s) {missing} hold no pairs (folds present: {present}): pick folds from those")
    if len(tested) < 2:
        raise EdgeCNNError(f"test folds {tested}: at least two are needed, each threshold being chosen on the others")
    evaluated = np.isin(folds_all, tested)
    scores_used, same_used, folds_used = scores_all[evaluated], same_all[evaluated], folds_all[evaluated]
    if same_used.all() or not same_used.any():
        raise EdgeCNNError("the evaluated pairs are all same-person or all different-person: "
                           "verification needs both genuine and impostor pairs")
    accuracies, thresholds = [], []
    for fold in tested:
        held_out = folds_used == fold
        threshold, _ = best_threshold(scores_used[~held_out], same_used[~held_out])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(scores_used[held_out], same_used[held_out], threshold))
    fpr, tpr, roc_thresholds = roc_curve(scores_used, same_used)
    std = float(np.std(accuracies, ddof=1))
    return VerificationResult(
        test_folds=tested,
        fold_accuracy=accuracies,
        fold_threshold=thresholds,
        mean_accuracy=float(np.mean(accuracies)),
        std_accuracy=std,
        standard_error=std / float(np.sqrt(len(tested))),
        fpr=fpr,
        tpr=tpr,
        roc_threshold=roc_thresholds,
        auc=float(np.trapezoid(tpr, fpr)),
        operating_points=[tar_at_far(fpr, tpr, roc_thresholds, target) for target in far_targets],
        genuine_pairs=int(same_used.sum()),
        impostor_pairs=int((~same_used).sum()),
    )


def two_way_protocol(
    scores: Sequence[float], same: Sequence[bool], folds: Sequence[int], test_folds: Sequence[int],
    far_targets: Sequence[float] = FAR_TARGETS,
) -> VerificationResult:
    """Evaluate only ``test_folds`` (e.g. 6-10 when 1-5's people trained the model), thresholds chosen on
    the other test folds. Refuses a ``test_folds`` that covers every fold: that is the standard protocol."""
    _, _, fold_ids = _check_inputs(scores, same, folds)
    if set(fold_ids.tolist()) <= set(int(fold) for fold in test_folds):
        raise EdgeCNNError(f"test folds {sorted(set(test_folds))} cover every fold present: the two-way variant "
                           "leaves some folds out (for training); use verification_protocol for all folds")
    return verification_protocol(scores, same, folds, test_folds, far_targets)


def _check_inputs(scores, same, folds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EdgeCNNError("scores must be numbers (one similarity per pair)") from None
    same = np.asarray(same).reshape(-1)
    folds = np.asarray(folds).reshape(-1)
    if not len(scores) == len(same) == len(folds):
        raise EdgeCNNError(
            f"{len(scores)} scores, {len(same)} labels and {len(folds)} fold ids: pass one of each per pair"
        )
    if not np.all(np.isfinite(scores)):
        raise EdgeCNNError(f"{int(np.sum(~np.isfinite(scores)))} score(s) are NaN or infinite: "
                           "check the embeddings of those pairs")
    if same.dtype != bool and not np.isin(same, (0, 1)).all():
        raise EdgeCNNError("same/different labels must be booleans (or 0/1)")
    if not np.issubdtype(folds.dtype, np.integer):
        raise EdgeCNNError(f"fold ids must be integers, not {folds.dtype}")
    return scores, same.astype(bool), folds.astype(np.int64)
