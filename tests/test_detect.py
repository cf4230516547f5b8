"""Sliding-window detection: pyramid, windows, NMS on a synthetic scene with a known person."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_cnn.detect import Box, detect, nms, pyramid_levels, pyramid_scales, window_boxes
from edge_cnn.errors import EdgeCNNError

WINDOW = (32, 16)  # height, width: a pedestrian window's 2:1 shape, small for speed


def _person(h: int, w: int) -> np.ndarray:
    """The synthetic 'person': a bright block with a dark frame 1/8 of its width thick."""
    pattern = np.full((h, w), 255.0)
    t = max(1, w // 8)
    pattern[:t], pattern[-t:], pattern[:, :t], pattern[:, -t:] = 0, 0, 0, 0
    return pattern


def _template_match(crops: np.ndarray) -> np.ndarray:
    """A stand-in classifier: 1 - mean absolute difference to the person pattern (1 = exact)."""
    template = _person(*WINDOW)
    return 1.0 - np.abs(crops.mean(axis=-1) - template).mean(axis=(1, 2)) / 255.0


def _scene(person_xywh, size=(96, 128)):
    image = np.zeros(size + (3,), np.uint8)
    x, y, w, h = person_xywh
    if w:
        image[y : y + h, x : x + w] = _person(h, w)[:, :, None]
    return Image.fromarray(image)


def test_window_positions_cover_the_edges():
    corners = window_boxes((40, 30), WINDOW, (16, 16))
    assert corners[0].tolist() == [0, 0]
    assert corners.max(axis=0).tolist() == [40 - 32, 30 - 16]
    assert len(corners) == len({tuple(c) for c in corners})


def test_pyramid_scales_stop_at_the_window():
    scales = pyramid_scales((96, 128), WINDOW, 1.5)
    assert scales[0] == 1.0
    assert all(96 * s >= 32 and 128 * s >= 16 for s in scales)
    assert 96 * scales[-1] / 1.5 < 32
    with pytest.raises(EdgeCNNError, match="smaller than the 32x16 window"):
        pyramid_scales((20, 100), WINDOW, 1.25)
    with pytest.raises(EdgeCNNError, match="greater than 1"):
        pyramid_scales((96, 128), WINDOW, 1.0)


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10], [0, 0, 10, 10]])
    scores = np.array([0.6, 0.9, 0.8, 0.1])
    assert nms(boxes, scores, 0.3) == [1, 2]
    assert nms(boxes, scores, 1.0) == [1, 2, 0, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3) == []


def test_detect_finds_the_person_at_its_place():
    person = (48, 32, 16, 32)  # exactly one window at scale 1, on the stride grid
    boxes = detect(_scene(person), _template_match, window=WINDOW, stride=(8, 8), threshold=0.9)
    assert boxes == [Box(*person, score=1.0)]


def test_detect_finds_a_large_person_on_a_coarser_level():
    person = (40, 16, 32, 64)  # twice the window: found at scale 1/2 of the pyramid
    boxes = detect(_scene(person), _template_match, window=WINDOW, stride=(4, 4), scale_step=2.0, threshold=0.9)
    assert len(boxes) == 1
    box = boxes[0]
    assert (box.x, box.y, box.w, box.h) == person


def test_detect_batches_do_not_change_results():
    scene = _scene((48, 32, 16, 32))
    one = detect(scene, _template_match, window=WINDOW, stride=(8, 8), threshold=0.6, batch_size=1)
    many = detect(scene, _template_match, window=WINDOW, stride=(8, 8), threshold=0.6, batch_size=1000)
    assert one == many and one


def test_detect_empty_scene_has_no_boxes():
    assert detect(_scene((0, 0, 0, 0)), _template_match, window=WINDOW, threshold=0.9) == []


def test_detect_and_face_import_no_tensorflow():
    """The device-side verbs stay TF-free like the runtime they sit on."""
    import subprocess
    import sys

    code = (
        "import sys; import edge_cnn.detect.cli, edge_cnn.detect.detector, edge_cnn.face.cli, edge_cnn.face.gallery;"
        "from click.testing import CliRunner; from edge_cnn.cli import main;"
        "assert CliRunner().invoke(main, ['detect', '--help']).exit_code == 0;"
        "assert CliRunner().invoke(main, ['face', 'identify', '--help']).exit_code == 0;"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_pyramid_levels_skip_the_finest_beyond_max_windows():
    scales, skipped = pyramid_levels((96, 128), WINDOW, (8, 8), 1.5)
    assert skipped == [] and scales == pyramid_scales((96, 128), WINDOW, 1.5)
    counts = [len(window_boxes((max(32, round(96 * s)), max(16, round(128 * s))), WINDOW, (8, 8))) for s in scales]
    kept, skipped = pyramid_levels((96, 128), WINDOW, (8, 8), 1.5, max_windows=sum(counts) - 1)
    assert skipped == scales[:1] and kept == scales[1:]  # the finest level goes first
    assert pyramid_levels((96, 128), WINDOW, (8, 8), 1.5, max_windows=sum(counts)) == (scales, [])
    with pytest.raises(EdgeCNNError, match="raise --max-windows or --stride"):
        pyramid_levels((96, 128), WINDOW, (8, 8), 1.5, max_windows=counts[-1] - 1)


def test_detect_under_the_window_cap_is_unchanged_and_over_it_misses_small_people():
    scene = _scene((48, 32, 16, 32))  # window-sized: found on the finest level only
    uncapped = detect(scene, _template_match, window=WINDOW, stride=(8, 8), threshold=0.9)
    assert detect(scene, _template_match, window=WINDOW, stride=(8, 8), threshold=0.9, max_windows=10_000) == uncapped
    assert detect(scene, _template_match, window=WINDOW, stride=(8, 8), threshold=0.9, max_windows=60) == []


def test_output_stems_keep_results_of_same_named_images_apart(tmp_path):
    from edge_cnn.io import output_stems

    paths = [tmp_path / "a" / "scene.png", tmp_path / "b" / "scene.png", tmp_path / "a" / "scene.jpg", tmp_path / "a" / "Scene.png"]
    assert output_stems(paths) == [Path("a/scene"), Path("b/scene"), Path("a/scene-2"), Path("a/Scene-3")]
    assert output_stems([tmp_path / "a" / "street.jpg"]) == [Path("street")]
    assert output_stems([]) == []
