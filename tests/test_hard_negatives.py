"""``edgecnn train --hard-negatives DIR``: mining a window classifier's false positives on person-free
images with the detector's own windows, then retraining on them (edge_cnn.train.hard_negatives)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main

TINY = dict(model="small_convnet", width=0.25, img_size="16x16", batch_size=8, lr=0.01, epochs=1,
            fine_tune_epochs=0, seed=0)


def _noise(rng, height, width):
    return rng.integers(0, 80, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def people(tmp_path_factory) -> Path:
    """person/ (a bright upright bar on noise) and background/ (noise) windows of 16x16."""
    root = tmp_path_factory.mktemp("people")
    rng = np.random.default_rng(0)
    for name in ("person", "background"):
        (root / name).mkdir()
        for i in range(12):
            image = _noise(rng, 16, 16)
            if name == "person":
                image[2:14, 6:10] = 220
            Image.fromarray(image).save(root / name / f"{name}_{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    """Three person-free frames (noise with bright horizontal bars), one in a sub-folder."""
    root = tmp_path_factory.mktemp("frames")
    (root / "sub").mkdir()
    rng = np.random.default_rng(1)
    for i, path in enumerate([root / "a.png", root / "b.jpg", root / "sub" / "c.png"]):
        image = _noise(rng, 40, 56)
        image[10 + i : 14 + i, 5:40] = 230
        Image.fromarray(image).save(path)
    return root


# --- the pure parts ------------------------------------------------------------------

def test_mining_scores_the_detectors_windows_and_keeps_those_above_the_threshold(frames, tmp_path):
    """The windows scored are exactly `edgecnn detect`'s (same crops, same order); a window is mined
    when its score reaches the threshold, and its PNG holds the pixels that were scored."""
    from edge_cnn.detect.sliding import detect
    from edge_cnn.train.hard_negatives import score_images, select, write_crops

    paths = sorted(p for p in frames.rglob("*") if p.is_file())
    seen_detect, seen_mining = [], []

    def brightness(store):
        def score(crops):
            store.append(crops.copy())
            return crops.mean(axis=(1, 2, 3)) / 255.0
        return score

    for path in paths:
        detect(Image.open(path).convert("RGB"), brightness(seen_detect), window=(16, 16), batch_size=10_000)
    hits, summary = score_images(paths, brightness(seen_mining), window=(16, 16), threshold=0.3)
    assert np.array_equal(np.concatenate(seen_detect), np.concatenate(seen_mining))
    scores = np.concatenate([c.mean(axis=(1, 2, 3)) / 255.0 for c in seen_mining])
    assert summary["windows"] == len(scores) and summary["images"] == 3
    assert len(hits) == summary["above_threshold"] == int((scores >= 0.3).sum()) > 0
    assert all(hit["score"] >= 0.3 for hit in hits)

    rows = write_crops(select(hits, 4), paths, tmp_path / "mined", window=(16, 16))
    assert len(rows) == 4 and len(list((tmp_path / "mined").glob("*.png"))) == 4
    for row in rows:
        crop = np.asarray(Image.open(row["path"]), dtype=np.float64)
        assert crop.shape == (16, 16, 3)
        assert crop.mean() / 255.0 == pytest.approx(row["score"], abs=1e-5)


def test_select_takes_each_images_best_first_then_the_next_round():
    from edge_cnn.train.hard_negatives import select

    hits = [{"image": 0, "score": s} for s in (0.99, 0.98, 0.97)] + [{"image": 1, "score": 0.6},
                                                                    {"image": 2, "score": 0.7}]
    assert [(h["image"], h["score"]) for h in select(hits, 4)] == [(0, 0.99), (2, 0.7), (1, 0.6), (0, 0.98)]
    assert len(select(hits, 100)) == 5


# --- the whole run ---------------------------------------------------------------------

def test_train_mines_writes_crops_and_retrains_on_them(people, frames, tmp_path):
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig, train

    out = tmp_path / "hn"
    # threshold 0: every window is a false positive, so the cap alone decides the count
    config = TrainConfig(data=str(people), out=str(out), hard_negatives=str(frames), hard_negatives_max=7,
                         hard_negatives_threshold=0.0, **TINY)
    result = train(config, verbose=0)
    run, first = RunDir(out), RunDir(out / "first_pass")
    assert first.model_path.is_file() and run.model_path.is_file()

    crops = sorted((out / "hard_negatives").glob("*.png"))
    assert len(crops) == 7
    with open(out / "hard_negatives" / "mined.csv", newline="") as handle:
        mined = list(csv.DictReader(handle))
    assert sorted(Path(row["path"]).name for row in mined) == [c.name for c in crops]
    assert len({row["source"] for row in mined}) == 3  # spread over the three frames

    background = run.labels().index("background")
    train_split, first_train = run.read_split("train"), first.read_split("train")
    assert train_split[: len(first_train)] == first_train
    assert sorted(train_split[len(first_train):]) == sorted((str(c.resolve()), background) for c in crops)
    for split in ("val", "test"):
        assert run.read_split(split) == first.read_split(split)

    report = json.loads(run.data_report_path.read_text())
    first_report = json.loads(first.data_report_path.read_text())
    assert report["hard_negatives"]["mined"] == 7 and report["hard_negatives"]["images"] == 3
    assert report["splits"]["train"]["per_class"]["background"] == \
        first_report["splits"]["train"]["per_class"]["background"] + 7
    assert result.metrics["images"]["train"] == len(first_train) + 7
    assert result.metrics["hard_negatives"]["mined"] == 7
    assert TrainConfig.load(run.config_path).hard_negatives == str(frames)


def test_classes_without_person_are_refused_before_any_epoch(square_images, frames, tmp_path):
    out = tmp_path / "squares"
    result = CliRunner().invoke(main, ["train", "--data", str(square_images), "--out", str(out),
                                       "--hard-negatives", str(frames), "--epochs", "1", "--fine-tune-epochs", "0"])
    assert result.exit_code == 2, result.output
    assert "'person'" in result.output and "['blue', 'red']" in result.output
    assert not (out / "first_pass" / "checkpoints" / "latest.json").exists()


@pytest.mark.parametrize(
    "hard_negatives, extra, message",
    [
        ("missing", [], "is not a folder"),
        ("empty", [], "holds no images"),
        ("frames", ["--task", "detect"], "not --task detect"),
        ("frames", ["--hard-negatives-max", "0"], "--hard-negatives-max"),
        ("frames", ["--hard-negatives-threshold", "1.5"], "--hard-negatives-threshold"),
    ],
)
def test_cli_bad_hard_negatives_exit_2_with_one_error_line(hard_negatives, extra, message, people, frames,
                                                           tmp_path):
    folders = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "frames": frames}
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    result = CliRunner().invoke(main, ["train", "--data", str(people), "--out", str(tmp_path / "run"),
                                       "--hard-negatives", str(folders[hard_negatives]), *extra])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not (tmp_path / "run" / "first_pass").exists()


def test_interrupted_first_pass_resumes_into_mining_and_retraining(people, frames, tmp_path):
    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig, train
    from edge_cnn.train.callbacks import read_history

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    out = tmp_path / "hn"
    config = TrainConfig(data=str(people), out=str(out), hard_negatives=str(frames), hard_negatives_max=5,
                         hard_negatives_threshold=0.0, **{**TINY, "epochs": 2})
    stopped = train(config, verbose=0, callbacks=[CtrlC()])
    assert stopped.interrupted and stopped.run_dir == out and "--resume" in stopped.resume_command
    assert not (out / "hard_negatives").exists() and not (out / "model.keras").exists()
    resumed = train(TrainConfig(out=str(out)), resume=True, verbose=0)
    assert not resumed.interrupted and RunDir(out).model_path.is_file()
    first_history = read_history(out / "first_pass" / "history.csv")
    assert [row["epoch"] for row in first_history] == [1, 2]  # the first pass continued, not restarted
    assert resumed.metrics["hard_negatives"]["mined"] == 5
    assert len(list((out / "hard_negatives").glob("*.png"))) == 5
