"""tools/compare_pedestrian.py and tools/compare_faces.py on tiny runs over real windows and faces.

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
                       "--batch", 4, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "export" / "manifest.json").is_file()  # exported by the script, int8 included
    rows = _rows(out, "compare_pedestrian")
    methods = ["HOG + linear SVM (OpenCV)", "CNN tflite fp32", "CNN tflite int8"]
    by_key = {(row["Subset"], row["Method"]): row for row in rows}
    assert set(by_key) == {(subset, m) for subset in ("all test windows", "Penn-Fudan only") for m in methods}
    for method in methods:
        # --limit 8: 5 INRIA + 3 Penn-Fudan windows of each class
        assert by_key[("all test windows", method)]["Windows"] == 16
        assert by_key[("Penn-Fudan only", method)]["Windows"] == 6
        for subset in ("all test windows", "Penn-Fudan only"):
            assert 0.0 <= by_key[(subset, method)]["ROC AUC"] <= 1.0
    assert by_key[("all test windows", methods[0])]["ROC AUC"] > 0.7  # HOG+SVM really scores people
    assert by_key[("all test windows", methods[0])]["Batched p50 (ms/window)"] is None  # no batch mode for HOG
    assert all(by_key[("all test windows", m)]["Batched p50 (ms/window)"] > 0 for m in methods[1:])
    assert "| HOG + linear SVM (OpenCV) |" in result.stdout

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
