"""Detection metrics against values worked out by hand (tests/test_detect_evaluate.py also checks AP against
pycocotools' COCOeval)."""

import math

import numpy as np
import pytest

from edge_cnn.box_metrics import (
    MISS_RATE_FPPI_POINTS,
    ap_50_95,
    average_precision,
    false_positives_per_frame,
    iou,
    log_average_miss_rate,
    match_detections,
)
from edge_cnn.errors import EdgeCNNError

BOX = [0.0, 0.0, 10.0, 10.0]
ELSEWHERE = [50.0, 50.0, 10.0, 10.0]  # overlaps nothing of interest


def scored(*rows):
    """Detections (x, y, w, h, score) of one image from (box, score) pairs."""
    return np.array([list(box) + [score] for box, score in rows]).reshape(-1, 5)


def test_iou_matrix():
    a = np.array([BOX, [0, 0, 0, 0]])
    b = np.array([BOX, [5, 0, 10, 10], ELSEWHERE])
    np.testing.assert_allclose(iou(a, b), [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]])
    assert iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_perfect_detections_score_one_everywhere():
    truth = [np.array([BOX, [20, 0, 10, 30]]), np.array([ELSEWHERE])]
    found = [scored((BOX, 0.9), ([20, 0, 10, 30], 0.8)), scored((ELSEWHERE, 0.7))]
    assert average_precision(found, truth) == 1.0
    assert ap_50_95(found, truth) == 1.0
    # every ground-truth box found before the first false positive: miss rate floored at 1e-10
    assert log_average_miss_rate(found, truth) == pytest.approx(1e-10)


def test_false_positive_ranked_between_true_ones_gives_the_101_point_value():
    # image 0: its box found (0.9) and a false positive (0.8); image 1: its box found (0.7).
    # Ranked T, F, T: recall .5, .5, 1; precision 1, .5, 2/3 -> made non-increasing 1, 2/3, 2/3.
    # Recall points 0, .01 .. .50 (51 of them) read precision 1; .51 .. 1 (50) read 2/3:
    # AP = (51 + 50 * 2/3) / 101 = 253 / 303.
    truth = [np.array([BOX]), np.array([BOX])]
    found = [scored((BOX, 0.9), (ELSEWHERE, 0.8)), scored((BOX, 0.7))]
    assert average_precision(found, truth) == pytest.approx(253 / 303)
    # the false positive ranked first instead: precision 0, .5, 2/3 -> 2/3 at every recall point
    found = [scored((BOX, 0.7), (ELSEWHERE, 0.95)), scored((BOX, 0.8))]
    assert average_precision(found, truth) == pytest.approx(2 / 3)


def test_a_box_is_matched_once_so_a_duplicate_is_a_false_positive():
    # two boxes, one found twice: ranked T, F, recall .5 then .5: precision 1 up to recall .5 (51 points), 0 beyond
    truth = [np.array([BOX, ELSEWHERE])]
    found = [scored((BOX, 0.9), ([0, 0, 10, 9], 0.8))]
    assert average_precision(found, truth) == pytest.approx(51 / 101)
    scores, true, positives = match_detections(found, truth)
    assert true.tolist() == [True, False] and positives == 2


def test_ap_50_95_on_known_overlaps():
    # image 0: detection of IoU .82 (score .9); image 1: detection of IoU .62 (score .8)
    # IoU .50 .55 .60: both true -> AP 1 (3 thresholds)
    # IoU .65 .70 .75 .80: ranked T, F, one of two boxes -> 51/101 (4 thresholds)
    # IoU .85 .90 .95: both false -> 0 (3 thresholds)
    # mean = (3 + 4 * 51/101) / 10 = 507 / 1010
    truth = [np.array([BOX]), np.array([BOX])]
    found = [scored(([0, 0, 10, 8.2], 0.9)), scored(([0, 0, 10, 6.2], 0.8))]
    assert ap_50_95(found, truth) == pytest.approx(507 / 1010)
    assert average_precision(found, truth, iou=0.7) == pytest.approx(51 / 101)


def test_ignored_boxes_are_neither_positives_nor_false_positives():
    truth = [np.array([BOX, ELSEWHERE])]
    ignore = [np.array([False, True])]
    found = [scored((ELSEWHERE, 0.9), (BOX, 0.8))]
    assert average_precision(found, truth, ignore=ignore) == 1.0
    # the box not found: a miss (ranked T then nothing, 51/101) unless it is ignored
    assert average_precision([scored((BOX, 0.8))], truth) == pytest.approx(51 / 101)
    assert average_precision([scored((BOX, 0.8))], truth, ignore=ignore) == 1.0
    assert average_precision([scored((ELSEWHERE, 0.9))], truth, ignore=ignore) == 0.0
    assert math.isnan(average_precision(found, [np.array([ELSEWHERE, BOX])], ignore=[np.array([True, True])]))


def test_log_average_miss_rate_by_hand():
    # 8 images, 4 boxes (images 0-3); detections ranked T .95, T .9, F .8, T .7, F .6, F .5 (box of image 3 missed).
    # cumulative: (fppi, recall) = (0, .25) (0, .5) (.125, .5) (.125, .75) (.25, .75) (.375, .75)
    # FPPI points .01 .018 .032 .056 .1 -> largest fppi <= them is 0: recall .5, miss .5 (5 points)
    # FPPI points .178 .316 .562 1 -> recall .75, miss .25 (4 points)
    # geometric mean = .5^(5/9) * .25^(4/9) = .5^(13/9)
    truth = [np.array([BOX])] * 4 + [np.zeros((0, 4))] * 4
    found = [scored((BOX, 0.95)), scored((BOX, 0.9)), scored((BOX, 0.7)), scored()]
    found += [scored((BOX, 0.8)), scored((BOX, 0.6)), scored((BOX, 0.5)), scored()]
    assert len(MISS_RATE_FPPI_POINTS) == 9
    assert log_average_miss_rate(found, truth) == pytest.approx(0.5 ** (13 / 9))
    # a false positive first at fppi .125: nothing is read below it (miss 1 at 5 points), then recall 1 (floored)
    first_false = [scored((BOX, 0.8)), scored((ELSEWHERE, 0.9))] + [scored()] * 6
    truth = [np.array([BOX])] + [np.zeros((0, 4))] * 7
    assert log_average_miss_rate(first_false, truth) == pytest.approx(1e-10 ** (4 / 9))
    assert log_average_miss_rate([scored()] * 8, truth) == 1.0
    # 2 images, ranked F (fppi .5), F (fppi 1), T (fppi 1): at FPPI 1 the last point of fppi <= 1 counts,
    # recall 1 (miss floored); the 8 points below 1 read recall 0 (miss 1)
    truth = [np.array([BOX]), np.zeros((0, 4))]
    found = [scored((ELSEWHERE, 0.8), (BOX, 0.7)), scored((BOX, 0.9))]
    assert log_average_miss_rate(found, truth) == pytest.approx(1e-10 ** (1 / 9))


def test_false_positives_per_frame():
    frames = [scored((BOX, 0.9), (BOX, 0.4)), scored((BOX, 0.6)), scored(), scored((BOX, 0.2), (BOX, 0.7), (BOX, 0.8))]
    assert false_positives_per_frame(frames, 0.5) == 1.0
    assert false_positives_per_frame(frames, 0.75) == 0.5
    with pytest.raises(EdgeCNNError, match="no person-free frames"):
        false_positives_per_frame([], 0.5)


def test_inputs_of_the_wrong_shape_or_count_are_refused():
    with pytest.raises(EdgeCNNError, match="one entry per image"):
        average_precision([scored()], [np.array([BOX])] * 2)
    with pytest.raises(EdgeCNNError, match="detections of image 0 has shape"):
        average_precision([np.array([BOX])], [np.array([BOX])])
    with pytest.raises(EdgeCNNError, match="2 ground-truth boxes but 1 ignore flags"):
        average_precision([scored()], [np.array([BOX, BOX])], ignore=[np.array([True])])
