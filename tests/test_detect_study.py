"""The detection study (``edgecnn study detect``) on a tiny synthetic case: a run directory whose split was
recorded by the trainer's own data route, a scripted detector (bright blobs), HOG+SVM. The operating
threshold comes from the validation split alone (frames and photos), the rows hold every column, the grey/low-resolution rows
exist, and bad input is one ``error:`` line with exit code 2."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_detect_task import make_scenes

from edge_cnn.cli import main as cli
from edge_cnn.errors import EdgeCNNError
from edge_cnn.studies import detect_compare as study


def bright_blobs(rgb: np.ndarray) -> np.ndarray:
    """A scripted detector: each connected region brighter than 200 is a box scored by its mean brightness / 255."""
    from scipy import ndimage

    grey = np.asarray(rgb, dtype=np.float64).mean(axis=2)
    regions, count = ndimage.label(grey > 200)
    boxes = []
    for index, found in enumerate(ndimage.find_objects(regions), start=1):
        rows, cols = found
        score = grey[regions == index].mean() / 255
        boxes.append([cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start, score])
    return np.array(boxes, dtype=np.float64).reshape(-1, 5)


def blob(frame: np.ndarray, level: int, at: int = 10) -> np.ndarray:
    """The frame with a 12x12 square of grey ``level`` (a false positive of ``bright_blobs`` scoring level/255)."""
    frame = frame.copy()
    frame[at:at + 12, at:at + 12] = level
    return frame


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A detect run's data contract (labels, splits/*.csv, boxes.json, config.yaml) written by the trainer's
    route, without training: the study reads the split from it."""
    from edge_cnn.preprocess import PreprocessSpec
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig
    from edge_cnn.train.box_route import BoxRoute

    root = tmp_path_factory.mktemp("study")
    scenes = make_scenes(root / "data", count=24, negatives=24)
    out = root / "run"
    config = TrainConfig(data=str(scenes), negatives=str(scenes.parent / "negatives"), out=str(out), task="detect",
                         model="small_convnet", img_size="64x64", val=0.25, test=0.25, seed=0)
    BoxRoute().prepare(config, RunDir(out), PreprocessSpec(64, 64, "rgb"))
    return out


@pytest.fixture(scope="module")
def splits(run):
    splits, positive = study.held_out(run)
    assert positive == "square"
    return splits


def scripted() -> study.Method:
    return study.Method("scripted blobs", bright_blobs, floor=0.0, size_mb=0.0,
                        timed={n: bright_blobs for n in study.THREADS}, degraded=True)


def test_the_held_out_split_is_the_runs_recorded_one(run, splits):
    from edge_cnn.run_dir import RunDir

    recorded = RunDir(run).read_split("test")
    assert len(splits["test"].photos) + len(splits["test"].frames) == len(recorded)
    assert splits["val"].frames and splits["test"].frames and splits["test"].people > 0
    assert all(photo.ndim == 3 and photo.shape[2] == 3 for photo in splits["test"].photos)


def test_the_threshold_rule_by_hand():
    frames = [np.array([[0, 0, 1, 1, s]]) for s in (0.9, 0.8, 0.7)] + [np.zeros((0, 5))] * 17  # 20 frames
    assert study.operating_threshold(frames, floor=0.05) == np.nextafter(0.7, 1)  # 2 boxes allowed: 0.9, 0.8
    assert study.operating_threshold(frames[:1] + frames[3:], floor=0.05) == 0.05  # 1 box <= 2 allowed: the floor
    with pytest.raises(EdgeCNNError, match="person-free frame"):
        study.operating_threshold([], floor=0.0)


def test_the_f1_threshold_by_hand():
    truth = [np.array([[0, 0, 10, 10], [20, 0, 10, 10]]), np.array([[0, 0, 10, 10]])]  # 3 people in 2 photos
    split = study.Split(photos=[], boxes=truth, ignore=[np.zeros(2, bool), np.zeros(1, bool)], frames=[])
    found = [np.array([[0, 0, 10, 10, 0.9], [50, 50, 10, 10, 0.8], [20, 0, 10, 10, 0.4]]),  # TP, FP, TP
             np.array([[0, 0, 10, 10, 0.7], [60, 60, 10, 10, 0.3]])]  # TP, FP
    # kept at 0.9: F1 2/4; 0.8: 2/5; 0.7: 4/6; 0.4: 6/7 (best); 0.3: 6/8
    assert study.f1_threshold(found, split, floor=0.05) == 0.4
    assert study.f1_threshold([np.zeros((0, 5))] * 2, split, floor=0.05) == 0.05  # nothing found: the floor
    tied = [np.array([[0, 0, 10, 10, 0.5], [50, 50, 10, 10, 0.5]]), np.zeros((0, 5))]  # equal scores go together
    assert study.f1_threshold(tied, split, floor=0.0) == 0.5


def test_the_threshold_is_chosen_on_validation_and_not_on_test(splits):
    levels = np.linspace(205, 225, len(splits["val"].frames)).round().astype(int)  # below the squares' 230
    val = dataclasses.replace(splits["val"], frames=[blob(f, level) for f, level in zip(splits["val"].frames, levels)])
    budget = np.nextafter(bright_blobs(val.frames[-1])[:, 4].max(), 1)  # above the brightest validation blob
    expected = max(budget, study.f1_threshold([bright_blobs(p) for p in val.photos], val, 0.0))
    clean = study.accuracy_rows([scripted()], {"val": val, "test": splits["test"]})
    noisy_test = dataclasses.replace(splits["test"], frames=[blob(f, 250) for f in splits["test"].frames])
    noisy = study.accuracy_rows([scripted()], {"val": val, "test": noisy_test})
    assert clean[0]["Threshold (val)"] == noisy[0]["Threshold (val)"] == pytest.approx(expected)
    assert clean[0]["FP / frame (val)"] == 0.0  # fewer than 10 frames: 0.1 per frame allows none
    assert clean[0]["FP / frame (test)"] == 0.0 and noisy[0]["FP / frame (test)"] == 1.0
    assert clean[0]["AP@0.5"] > 0.9 and clean[0]["Recall (test)"] > 0.9  # the squares (230) stay above it


def test_the_table_has_every_column_and_the_grey_low_resolution_rows(splits):
    rows = study.compare([study.hog_method(), scripted()], splits, frames=2, rounds=1)
    assert all(list(row) == study.COLUMNS for row in rows)
    conditions = {(row["Method"], row["Photos"]) for row in rows}
    for method in (study.HOG_METHOD + ", hitThreshold 0", "scripted blobs"):
        assert {(method, c) for c in [study.AS_TAKEN, *study.CONDITIONS]} <= conditions
    clean = [row for row in rows if row["Photos"] == study.AS_TAKEN]
    assert all(row["ms / frame, 1 thread"] > 0 and row["ms / frame, 2 threads"] > 0 for row in clean)
    assert all(row["AP@0.5 change (pp)"] is not None for row in rows if row["Photos"] != study.AS_TAKEN)
    verdicts = study.targets(rows)
    assert set(verdicts) == {"scripted blobs"} and len(verdicts["scripted blobs"]) == 4


def test_degrade_is_grey_and_keeps_the_size():
    rgb = np.zeros((30, 40, 3), dtype=np.uint8)
    rgb[:, :20] = (255, 0, 0)
    out = study.degrade(rgb, 3)
    assert out.shape == rgb.shape and (out[..., 0] == out[..., 2]).all() and out[0, 0, 0] == out[0, 5, 0] > 0


def _refused(code: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_bad_input_is_one_error_line_and_exit_2(run, tmp_path, capsys):
    _refused(study.main(["--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]), capsys.readouterr().err,
             "does not exist")
    classify = tmp_path / "classify"
    classify.mkdir()
    (classify / "config.yaml").write_text("task: classify\n")
    _refused(study.main(["--run", str(classify), "--out", str(tmp_path / "o")]), capsys.readouterr().err,
             "not 'detect'")
    _refused(study.main(["--run", str(run), "--out", str(tmp_path / "o")]), capsys.readouterr().err,
             "edgecnn export RUN --int8")  # a detect run not yet exported
    with pytest.raises(SystemExit) as exited:  # argparse's own grammar: exit 2, one line
        study.main(["--run", str(run), "--rounds", "0", "--out", str(tmp_path / "o")])
    _refused(exited.value.code, capsys.readouterr().err, "--rounds")
    with pytest.raises(EdgeCNNError, match="--window-run .* has no export"):
        study.window_method(tmp_path)
    result = CliRunner().invoke(cli, ["study", "detect", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")]
