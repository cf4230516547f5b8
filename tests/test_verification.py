"""The 10-fold verification protocol on synthetic pairs whose answers are known or computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge_cnn.errors import EdgeCNNError
from edge_cnn.tasks.verification import cosine_similarities, two_way_protocol, verification_protocol

# Three folds of 2 genuine + 2 impostor pairs (accept when score >= threshold):
#   fold 1: genuine 0.9, 0.6   impostor 0.5,  0.1
#   fold 2: genuine 0.8, 0.3   impostor 0.4,  0.2
#   fold 3: genuine 0.7, 0.45  impostor 0.58, 0.0
HAND_SCORES = [0.9, 0.6, 0.5, 0.1, 0.8, 0.3, 0.4, 0.2, 0.7, 0.45, 0.58, 0.0]
HAND_SAME = [True, True, False, False] * 3
HAND_FOLDS = [1] * 4 + [2] * 4 + [3] * 4
# Test fold 1, trained on folds 2+3 (sorted: 0.0i 0.2i 0.3g 0.4i 0.45g 0.58i 0.7g 0.8g): 6 of 8 correct at
#   the midpoints 0.25, 0.425 and 0.64; the lowest, 0.25, wins. On fold 1: 0.5i is accepted -> 3/4.
# Test fold 2, trained on 1+3 (0.0i 0.1i 0.45g 0.5i 0.58i 0.6g 0.7g 0.9g): 7 of 8 at 0.59 only.
#   On fold 2: 0.3g is rejected -> 3/4.
# Test fold 3, trained on 1+2 (0.1i 0.2i 0.3g 0.4i 0.5i 0.6g 0.8g 0.9g): 7 of 8 at 0.55 only.
#   On fold 3: 0.45g rejected and 0.58i accepted -> 2/4.
# Mean (0.75 + 0.75 + 0.5) / 3 = 2/3; sample std sqrt((2 * (1/12)^2 + (1/6)^2) / 2) = 0.144338.
# Pooled ROC, descending: 0.9g 0.8g 0.7g 0.6g 0.58i 0.5i 0.45g 0.4i 0.3g 0.2i 0.1i 0.0i.
#   FAR <= 0.01 -> no impostor accepted: lowest threshold 0.6, TAR 4/6.
#   FAR <= 0.4 -> at most 2 of 6 impostors: lowest threshold 0.45 (FAR 2/6), TAR 5/6.
#   AUC = genuine-above-impostor fraction = (4 + 4 + 5 + 6 + 6 + 6) / 36 = 31/36.


def test_hand_computed_protocol():
    result = verification_protocol(HAND_SCORES, HAND_SAME, HAND_FOLDS, far_targets=(0.01, 0.4))
    assert result.test_folds == [1, 2, 3]
    assert result.fold_threshold == pytest.approx([0.25, 0.59, 0.55])
    assert result.fold_accuracy == pytest.approx([0.75, 0.75, 0.5])
    assert result.mean_accuracy == pytest.approx(2 / 3)
    assert result.std_accuracy == pytest.approx(0.1443375673)
    assert result.standard_error == pytest.approx(0.1443375673 / np.sqrt(3))
    assert result.auc == pytest.approx(31 / 36)
    strict, loose = result.operating_points
    assert (strict.threshold, strict.far, strict.tar) == pytest.approx((0.6, 0.0, 4 / 6))
    assert (loose.threshold, loose.far, loose.tar) == pytest.approx((0.45, 2 / 6, 5 / 6))
    assert (result.genuine_pairs, result.impostor_pairs) == (6, 6)
    # ROC: 13 points (one per distinct score plus the origin), from (0, 0) to (1, 1), never falling
    assert len(result.fpr) == 13 and (result.fpr[0], result.tpr[0], result.fpr[-1], result.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(result.fpr) >= 0) and np.all(np.diff(result.tpr) >= 0)
    summary = result.to_dict(with_roc=True)
    assert summary["tar_at_far"][1]["tar"] == pytest.approx(5 / 6) and len(summary["roc"]["fpr"]) == 13


def test_two_way_uses_only_the_evaluated_folds():
    # Folds 1 and 2 only: fold 1's threshold comes from fold 2 (0.2i 0.3g 0.4i 0.8g: 3 of 4 at 0.25 and 0.6;
    # lowest 0.25 -> fold 1 3/4), fold 2's from fold 1 (0.1i 0.5i 0.6g 0.9g: 4 of 4 at 0.55 -> fold 2 3/4).
    result = two_way_protocol(HAND_SCORES, HAND_SAME, HAND_FOLDS, [1, 2])
    assert result.fold_threshold == pytest.approx([0.25, 0.55])
    assert result.fold_accuracy == pytest.approx([0.75, 0.75])
    assert (result.genuine_pairs, result.impostor_pairs) == (4, 4)
    other_fold_changed = HAND_SCORES[:8] + [0.0, 0.0, 1.0, 1.0]
    assert two_way_protocol(other_fold_changed, HAND_SAME, HAND_FOLDS, [1, 2]).fold_accuracy == result.fold_accuracy
    with pytest.raises(EdgeCNNError, match="cover every fold"):
        two_way_protocol(HAND_SCORES, HAND_SAME, HAND_FOLDS, [1, 2, 3])


def test_perfectly_separable_scores_give_full_marks():
    rng = np.random.default_rng(0)
    same = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    folds = np.repeat(np.arange(1, 11), 60)
    scores = np.where(same, rng.uniform(0.6, 1.0, same.size), rng.uniform(-1.0, 0.4, same.size))
    result = verification_protocol(scores, same, folds)
    assert result.fold_accuracy == [1.0] * 10 and result.std_accuracy == 0.0
    assert all(0.4 < threshold < 0.6 for threshold in result.fold_threshold)
    assert result.auc == 1.0
    assert [point.tar for point in result.operating_points] == [1.0, 1.0]


def test_overlapping_scores_match_the_normal_model():
    # Genuine N(0.6, 0.15), impostor N(0.1, 0.15), 3000 each: the best threshold is near 0.35, where
    # accuracy is Phi(0.25 / 0.15) = 95.2%; TAR at FAR 1e-2 is P(N(0.6, 0.15) >= 0.1 + 2.326 * 0.15) = 84.3%.
    rng = np.random.default_rng(1)
    same = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    scores = np.where(same, rng.normal(0.6, 0.15, same.size), rng.normal(0.1, 0.15, same.size))
    result = verification_protocol(scores, same, np.repeat(np.arange(1, 11), 600))
    assert result.mean_accuracy == pytest.approx(0.952, abs=0.01)
    assert all(abs(threshold - 0.35) < 0.05 for threshold in result.fold_threshold)
    assert result.operating_points[0].far <= 0.01
    assert result.operating_points[0].tar == pytest.approx(0.843, abs=0.03)


def test_cosine_similarities():
    a = np.array([[1.0, 0.0], [3.0, 3.0], [0.0, 2.0]])
    b = np.array([[5.0, 0.0], [-1.0, 0.0], [0.0, -1.0]])
    assert cosine_similarities(a, b) == pytest.approx([1.0, -np.sqrt(0.5), -1.0])
    with pytest.raises(EdgeCNNError, match="zero"):
        cosine_similarities(a, np.zeros_like(b))
    with pytest.raises(EdgeCNNError, match="same shape"):
        cosine_similarities(a, b[:2])


@pytest.mark.parametrize(
    "scores, same, folds, test_folds, expected",
    [
        (HAND_SCORES[:-1] + [float("nan")], HAND_SAME, HAND_FOLDS, None, "NaN"),
        (HAND_SCORES[:-1], HAND_SAME, HAND_FOLDS, None, "one of each per pair"),
        (HAND_SCORES, HAND_SAME, HAND_FOLDS, [1], "at least two"),
        (HAND_SCORES, HAND_SAME, HAND_FOLDS, [1, 4], "hold no pairs"),
        (HAND_SCORES, [True] * 12, HAND_FOLDS, None, "both genuine and impostor"),
        (HAND_SCORES, ["yes"] * 12, HAND_FOLDS, None, "booleans"),
        (HAND_SCORES, HAND_SAME, [0.5] * 12, None, "integers"),
        (["high"] * 12, HAND_SAME, HAND_FOLDS, None, "numbers"),
    ],
)
def test_bad_inputs_are_one_line_errors(scores, same, folds, test_folds, expected):
    with pytest.raises(EdgeCNNError, match=expected):
        verification_protocol(scores, same, folds, test_folds)
