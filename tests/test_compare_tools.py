"""The pedestrian, faces and cv studies (``edge_cnn.studies``), run through their ``tools/*.py`` entry points,
on tiny runs over real windows and faces.

The runs are tiny Conv-BN-ReLU models trained here for a few epochs (their accuracy is not the point);
the scripts must export them (int8 included), measure every method on the same held-out images, honour
--limit and the Penn-Fudan-only subset, and write the table as Markdown and JSON.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, tiny_classifier

pytest.importorskip("cv2", reason="opencv-python-headless is in the dev extra")


def _train_run(folder: Path, spec, labels: list[str], train: list, test: list, val: list | None = None) -> Path:
    """A finished run directory with a tiny classifier trained on ``train`` ([(path, label)])."""
    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir

    keras.utils.set_random_seed(0)
    model = tiny_classifier(spec.input_shape, len(labels))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(spec([p for p, _ in train]), np.array([y for _, y in train]), epochs=3, batch_size=16, verbose=0)
    run = RunDir(folder)
    folder.mkdir(parents=True)
    model.save(run.model_path)
    run.write_labels(labels)
    spec.save(run.preprocess_path)
    run.write_split("train", train)
    run.write_split("val", val or train[:2])
    run.write_split("test", test)
    return folder


def _run_tool(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def _rows(out: Path, name: str) -> list[dict]:
    rows = json.loads((out / f"{name}.json").read_text())["rows"]
    markdown = (out / f"{name}.md").read_text()
    for row in rows:
        assert row["Method"] in markdown
        assert 0.0 <= row["Accuracy (%)"] <= 100.0
        if row.get("Windows as", "as taken") != "as taken":
            continue  # degraded windows: scored, not timed
        latency = row.get("Latency p50 (ms/window)", row.get("Latency p50 (ms/image)"))
        assert latency > 0
        if row["Method"].startswith("CNN"):
            assert row[next(k for k in row if k.startswith("Model-only"))] > 0
    return rows


def test_compare_pedestrian_on_a_tiny_run(tmp_path, shared_data):
    from edge_cnn.preprocess import PreprocessSpec

    root = shared_data / "pedestrian"

    def files(folder, prefix, exclude=None):
        return [p for p in sorted((root / folder).glob(f"{prefix}*.png")) if not (exclude and p.name.startswith(exclude))]

    # per class, 5 INRIA then 5 Penn-Fudan test windows; 20 others to train on
    person = files("person", "inria_")[:10] + files("person", "pennfudan_")[:10]
    background = files("background", "inria_neg_")[:10] + files("background", "pennfudan_bg_")[:10]
    test = [(p, 1) for p in person[:5] + person[10:15]] + [(p, 0) for p in background[:5] + background[10:15]]
    train = [(p, 1) for p in person[5:10] + person[15:]] + [(p, 0) for p in background[5:10] + background[15:]]
    run = _train_run(tmp_path / "ped", PreprocessSpec(height=32, width=16), ["background", "person"], train, test)

    out = tmp_path / "report"
    result = _run_tool("compare_pedestrian.py", "--run", run, "--limit", 8, "--formats", "tflite", "--timing-runs", 10,
                       "--batch", 4, "--rounds", 2, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "export" / "manifest.json").is_file()  # exported by the script, int8 included
    rows = _rows(out, "compare_pedestrian")
    methods = ["HOG + linear SVM (OpenCV)", "CNN tflite fp32", "CNN tflite int8"]
    by_key = {(row["Subset"], row["Method"]): row for row in rows if row["Windows as"] == "as taken"}
    assert set(by_key) == {(subset, m) for subset in ("all test windows", "Penn-Fudan only") for m in methods}
    # issue 15: the same windows grey, 36x18 and back, every method, accuracy and AUC without latency
    low = {(row["Subset"], row["Method"]): row for row in rows if row["Windows as"] == "grey, 36x18 and back"}
    assert set(low) == set(by_key) and len(rows) == 2 * len(by_key)
    for key, row in low.items():
        assert row["Windows"] == by_key[key]["Windows"] and 0.0 <= row["ROC AUC"] <= 1.0
        assert row["Latency p50 (ms/window)"] is None and row["Latency / HOG+SVM"] is None
    assert low[("all test windows", methods[0])]["ROC AUC"] != by_key[("all test windows", methods[0])]["ROC AUC"]
    for method in methods:
        # --limit 8: 5 INRIA + 3 Penn-Fudan windows of each class
        assert by_key[("all test windows", method)]["Windows"] == 16
        assert by_key[("Penn-Fudan only", method)]["Windows"] == 6
        for subset in ("all test windows", "Penn-Fudan only"):
            assert 0.0 <= by_key[(subset, method)]["ROC AUC"] <= 1.0
    assert by_key[("all test windows", methods[0])]["ROC AUC"] > 0.7  # HOG+SVM really scores people
    assert by_key[("all test windows", methods[0])]["Batched p50 (ms/window)"] is None  # no batch mode for HOG
    assert all(by_key[("all test windows", m)]["Batched p50 (ms/window)"] > 0 for m in methods[1:])
    hog_ms = by_key[("all test windows", methods[0])]["Latency p50 (ms/window)"]
    for method in methods:  # the ratio is to HOG+SVM's latency of the same interleaved rounds
        row = by_key[("all test windows", method)]
        assert row["Latency / HOG+SVM"] == pytest.approx(row["Latency p50 (ms/window)"] / hog_ms, abs=0.006)
    assert "| as taken | all test windows | HOG + linear SVM (OpenCV) |" in result.stdout
    assert "| grey, 36x18 and back | all test windows | HOG + linear SVM (OpenCV) |" in result.stdout

    wrong = _run_tool("compare_pedestrian.py", "--run", tmp_path / "missing", "--out", out)
    assert wrong.returncode == 2 and "does not exist" in wrong.stderr


def test_compare_faces_on_tiny_runs(tmp_path, shared_data):
    from edge_cnn.data import resolve_data
    from edge_cnn.preprocess import PreprocessSpec

    faces = resolve_data("face")
    face_files = sorted((faces / "face").glob("*.png"))[:16]
    non_face_files = sorted((faces / "non_face").glob("*.png"))[:16]
    labelled = [(p, 0) for p in face_files] + [(p, 1) for p in non_face_files]
    face_run = _train_run(tmp_path / "face", PreprocessSpec(height=16, width=16, color="grayscale"),
                          ["face", "non_face"], labelled[4:16] + labelled[20:], labelled[:4] + labelled[16:20])

    people = ["s01", "s02", "s03"]
    att = shared_data / "att_faces"
    per_person = [sorted((att / name).glob("*.png")) for name in people]
    train = [(p, i) for i, paths in enumerate(per_person) for p in paths[:7]]
    val = [(paths[7], i) for i, paths in enumerate(per_person)]
    test = [(p, i) for i, paths in enumerate(per_person) for p in paths[8:]]
    id_run = _train_run(tmp_path / "id", PreprocessSpec(height=28, width=24, color="grayscale"), people, train, test, val)

    out = tmp_path / "report"
    result = _run_tool("compare_faces.py", "--faces-run", face_run, "--id-run", id_run, "--att", att, "--limit", 3,
                       "--formats", "tflite", "--timing-runs", 10, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {(row["Task"], row["Method"].split(" (")[0]): row for row in _rows(out, "compare_faces")}
    expected = [("face vs non-face", m) for m in ("Haar cascade", "CNN tflite fp32", "CNN tflite int8")]
    expected += [("identification", m) for m in ("Eigenfaces", "CNN tflite fp32", "CNN tflite int8")]
    assert sorted(rows) == sorted(expected)
    assert all(row["Images"] == 6 for row in rows.values())  # --limit 3 of each face class; 2 held out x 3 people
    assert rows[("identification", "Eigenfaces")]["Accuracy (%)"] >= 50  # chance is 33%
    assert "Eigenfaces (24 components, 28x24 grey)" in result.stdout  # (7 + 1) images x 3 people

    skipped = _run_tool("compare_faces.py", "--faces-run", "none", "--id-run", id_run, "--att", tmp_path / "nowhere",
                        "--out", out)
    assert skipped.returncode == 2 and "--att" in skipped.stderr


@pytest.mark.slow
def test_pedestrian_cv_scores_every_window_once_with_models_that_never_saw_its_photo(tmp_path, shared_data):
    import re

    import yaml

    from edge_cnn.baselines import HogPeopleScorer, roc_auc
    from edge_cnn.recipes import load_recipe
    from edge_cnn.data import group_key
    from edge_cnn.preprocess import PreprocessSpec

    recipe = load_recipe("pedestrian")
    photo = re.compile(recipe["group_by"])
    root = shared_data / "pedestrian"
    data = tmp_path / "data"
    picks = {("person", "inria_"): 6, ("person", "pennfudan_"): 6, ("background", "inria_neg_"): 4,
             ("background", "pennfudan_bg_"): 8}
    for (label, prefix), count in picks.items():  # the first window of `count` different photos per source
        (data / label).mkdir(parents=True, exist_ok=True)
        seen = set()
        for path in sorted((root / label).glob(f"{prefix}*.png")):
            if len(seen) < count and group_key(photo, str(path)) not in seen:
                seen.add(group_key(photo, str(path)))
                (data / label / path.name).symlink_to(path)
    tiny = {**recipe, "model": "small_convnet", "width": 0.25, "img_size": "32x16", "epochs": 1, "batch_size": 8,
            "val": 0.25}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    out = tmp_path / "cv"
    args = ("pedestrian_cv.py", "--data", data, "--folds", 2, "--recipe", tmp_path / "tiny.yaml", "--formats", "tflite",
            "--out", out)
    result = _run_tool(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "pedestrian_cv.json").read_text())["rows"]
    by_key = {(row["Subset"], row["Method"]): row for row in rows}
    methods = ["HOG + linear SVM (OpenCV)", "CNN tflite fp32", "CNN tflite int8"]
    assert set(by_key) == {(subset, m) for subset in ("all windows", "Penn-Fudan only") for m in methods}
    assert all(by_key[("all windows", m)]["Windows"] == 24 and by_key[("Penn-Fudan only", m)]["Windows"] == 14
               for m in methods)
    # HOG's pooled AUC is over every window exactly once
    files = sorted(data.rglob("*.png"))
    hog, window = HogPeopleScorer(), PreprocessSpec(height=128, width=64)
    margins = np.array([hog.score(window.load_image(p)) for p in files])
    assert by_key[("all windows", methods[0])]["ROC AUC (out-of-fold)"] == round(
        roc_auc(np.array([p.parent.name == "person" for p in files]), margins), 4)
    assert by_key[("all windows", methods[1])]["Folds with AUC above HOG+SVM's"] in ("0 of 2", "1 of 2", "2 of 2")
    # each window held out once, by a fold whose training saw none of its photo
    held = [json.loads((out / f"fold{i}" / "held_out.json").read_text()) for i in range(2)]
    assert sorted(held[0] + held[1]) == sorted(str(p) for p in files)
    for i in range(2):
        trained_on = {group_key(photo, p) for p, _ in _split_items(out / f"fold{i}")}
        assert trained_on.isdisjoint(group_key(photo, p) for p in held[i])

    again = _run_tool(*args)  # finished folds are reused
    assert again.returncode == 0 and again.stdout.count("reusing the finished run") == 2 and "training" not in again.stdout
    wrong = _run_tool("pedestrian_cv.py", "--data", data, "--folds", 1, "--out", tmp_path / "x")
    assert wrong.returncode == 2 and "at least 2 folds" in wrong.stderr and "Traceback" not in wrong.stderr


def _split_items(run: Path) -> list[tuple[str, int]]:
    from edge_cnn.run_dir import RunDir

    return RunDir(run).read_split("train") + RunDir(run).read_split("val")
