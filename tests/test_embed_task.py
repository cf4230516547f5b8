"""The embed task: its head (unit-length vectors, safe-loader layers only), a tiny embedding model
trained through `edgecnn train --task embed` on synthetic identity folders with a test fold's people
excluded, verification validation, the saved model without the margin head, bad input at the CLI, and
the export (fp32 and int8) with `face verify` / `enroll` / `identify` on it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_cnn.cli import main
from edge_cnn.tasks.embed import identity_pairs, verification_metrics

SIDE = 32
PEOPLE = 12  # with 4 images each, plus 2 people with a single image
EXCLUDED = {"Person_03", "Person_04", "Person_05"}  # the people of fold 2 of the tiny pairs file


def make_identities(root: Path, seed: int = 0) -> Path:
    """LFW layout (<name>/<name>_0001.jpg): each person a fixed random colour pattern, each image of them
    that pattern shifted a little under fresh noise, so that people are told apart by content."""
    rng = np.random.default_rng(seed)
    people = {f"Person_{k:02d}": 4 for k in range(PEOPLE)} | {"Single_a": 1, "Single_b": 1}
    for name, count in people.items():
        pattern = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(pattern).resize((SIDE + 4, SIDE + 4), Image.NEAREST), dtype=np.float32)
        (root / name).mkdir(parents=True)
        for index in range(1, count + 1):
            dx, dy = rng.integers(0, 5, 2)
            pixels = base[dy:dy + SIDE, dx:dx + SIDE] + rng.normal(0, 12, (SIDE, SIDE, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name / f"{name}_{index:04d}.jpg",
                                                                          quality=95)
    return root


def make_pairs(path: Path) -> Path:
    """Two folds of one matched and one mismatched pair; fold 2 names Person_03, _04 and _05."""
    path.write_text("2\t1\nPerson_00\t1\t2\nPerson_01\t1\tPerson_02\t1\n"
                    "Person_03\t1\t3\nPerson_04\t2\tPerson_05\t4\n")
    return path


@pytest.fixture(scope="module")
def identities(tmp_path_factory) -> Path:
    return make_identities(tmp_path_factory.mktemp("identities") / "images")


@pytest.fixture(scope="module")
def embed_run(identities, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "run"
    pairs = make_pairs(identities.parent / "pairs.txt")
    result = CliRunner().invoke(main, [
        "train", "--task", "embed", "--data", str(identities), "--model", "small_convnet", "--img-size", "32x32",
        "--epochs", "2", "--fine-tune-epochs", "0", "--batch-size", "8", "--lr", "0.003", "--val", "0.2",
        "--test", "0.2", "--embedding-dim", "16", "--loss", "arcface", "--margin-scale", "16",
        "--exclude-pairs", str(pairs), "--test-folds", "2", "--hflip", "--width-shift", "0.05",
        "--grey", "0.2", "--blur", "0.2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


# --- the head and the metrics, without training ----------------------------------------------------


def test_head_outputs_unit_vectors_from_allowed_layers(tmp_path):
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.train.model import build_model

    model = build_model("small_convnet", (32, 32, 3), 16, task="embed")
    vectors = model.predict(np.random.default_rng(0).uniform(0, 1, (5, 32, 32, 3)).astype(np.float32), verbose=0)
    assert vectors.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [layer.name for layer in model.layers[-4:]] == ["head_pool", "embed_dense", "embed_bn", "embed_l2"]
    model.save(tmp_path / "m.keras")
    assert load_keras_model(tmp_path / "m.keras").output_shape == (None, 16)  # the safe loader accepts it


def test_mobilefacenet_keeps_its_own_embedding():
    from edge_cnn.train.model import build_model

    model = build_model("mobilefacenet", (32, 32, 3), 128, task="embed", width=0.25)
    assert "embed_dense" not in {layer.name for layer in model.layers}
    assert model.output_shape == (None, 128) and model.layers[-1].name == "embed_l2"


def test_identity_pairs_are_balanced_and_verification_is_perfect_on_separated_people():
    identities = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    first, second, same = identity_pairs(identities)
    assert same.sum() == 3 + 1 + 3 and (~same).sum() == same.sum()
    assert np.all((identities[first] == identities[second]) == same)
    vectors = np.eye(3)[identities] + 0.01
    metrics = verification_metrics(vectors, identities)
    assert metrics["accuracy"] == 1.0 and metrics["auc"] == 1.0 and metrics["people"] == 3


# --- training ----------------------------------------------------------------------------------


def test_test_fold_people_are_never_in_training_or_validation(embed_run):
    people = {split: {Path(row["path"]).parent.name for row in csv.DictReader(open(embed_run / "splits" / f"{split}.csv"))}
              for split in ("train", "val", "test")}
    assert not (people["train"] | people["val"] | people["test"]) & EXCLUDED
    assert not people["train"] & people["val"] and not people["train"] & people["test"]
    assert {"Single_a", "Single_b"} <= people["train"]  # one image still makes a training class
    report = json.loads((embed_run / "data_report.json").read_text())
    assert report["excluded_people"] == 3 and report["split_by"] == "person"
    labels = json.loads((embed_run / "labels.json").read_text())
    assert labels[: report["train_people"]] == sorted(people["train"])


def test_history_and_metrics_hold_verification(embed_run):
    rows = list(csv.DictReader(open(embed_run / "history.csv")))
    assert len(rows) == 2 and "val_auc" in rows[0]
    assert all(0.0 <= float(row["val_accuracy"]) <= 1.0 and 0.0 <= float(row["val_auc"]) <= 1.0 for row in rows)
    metrics = json.loads((embed_run / "metrics.json").read_text())
    assert metrics["task"] == "embed" and metrics["val"]["auc"] is not None and metrics["test"]["pairs"] > 0
    config = (embed_run / "config.yaml").read_text()
    assert "task: embed" in config and "loss: arcface" in config


def test_saved_model_is_the_embedding_model_without_margin_head(embed_run):
    from edge_cnn.keras_file import load_keras_model

    text = json.dumps(json.loads(_zip_member(embed_run / "model.keras", "config.json")))
    assert "MarginHead" not in text and "margin_head" not in text
    model = load_keras_model(embed_run / "model.keras")
    assert model.output_shape == (None, 16)
    vectors = model.predict(np.zeros((2, SIDE, SIDE, 3), np.float32), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def _zip_member(path: Path, name: str) -> str:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(name).decode()


def _refused(result, *words):
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]


def test_bad_embed_settings_give_one_error_line(identities, tmp_path):
    base = ["train", "--task", "embed", "--data", str(identities), "--img-size", "32x32", "--epochs", "1"]
    _refused(CliRunner().invoke(main, [*base, "--exclude-pairs", str(tmp_path / "missing.txt"), "--test-folds", "2",
                                       "--out", str(tmp_path / "a")]), "--exclude-pairs", "pairs.txt")
    _refused(CliRunner().invoke(main, [*base, "--loss", "triplet", "--out", str(tmp_path / "b")]), "--loss", "arcface")
    pairs = make_pairs(tmp_path / "pairs.txt")
    _refused(CliRunner().invoke(main, [*base, "--exclude-pairs", str(pairs), "--test-folds", "3",
                                       "--out", str(tmp_path / "c")]), "--test-folds")
    _refused(CliRunner().invoke(main, [*base, "--loss", "cosface", "--margin", "1.5", "--out", str(tmp_path / "d")]),
             "cosface margin")


def test_embed_run_refuses_embedding_export_and_class_evaluation(embed_run, identities, tmp_path):
    _refused(CliRunner().invoke(main, ["export", str(embed_run), "--embedding", "--out", str(tmp_path / "x")]),
             "--embedding")
    _refused(CliRunner().invoke(main, ["evaluate", str(embed_run), "--data", str(identities)]), "--protocol lfw")


# --- export and the face commands ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embed_export(embed_run):
    from edge_cnn.export import export

    return export(embed_run, int8=True)


def test_export_agrees_with_keras_by_cosine(embed_export):
    rows = {(row["Format"], row["Precision"]): row for row in embed_export.rows}
    assert not embed_export.failed, embed_export.rows
    for artifact in embed_export.manifest.artifacts:
        assert [output.meaning for output in artifact.outputs] == ["embedding"]
        if artifact.precision == "fp32":
            assert artifact.parity["min_cosine"] >= 0.99, artifact.parity
        else:
            assert artifact.parity["mean_cosine"] >= 0.9, artifact.parity
    assert {("tflite", "fp32"), ("onnx", "fp32")} <= set(rows)
    assert embed_export.manifest.task == "embed"


def test_lfw_protocol_stores_a_threshold_that_face_verify_uses(embed_export, identities):
    export_dir = str(embed_export.manifest_path.parent)
    result = CliRunner().invoke(main, ["evaluate", export_dir, "--protocol", "lfw", "--pairs",
                                       str(identities.parent / "pairs.txt"), "--data", str(identities), "--json"])
    assert result.exit_code == 0, result.output
    a, b = identities / "Person_03" / "Person_03_0001.jpg", identities / "Person_03" / "Person_03_0003.jpg"
    result = CliRunner().invoke(main, ["face", "verify", export_dir, str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["threshold_source"].startswith("manifest (lfw")


def test_face_verify_enroll_identify_on_the_export(embed_export, identities, tmp_path):
    export_dir = str(embed_export.manifest_path.parent)
    a, b = identities / "Person_00" / "Person_00_0001.jpg", identities / "Person_00" / "Person_00_0002.jpg"
    result = CliRunner().invoke(main, ["face", "verify", export_dir, str(a), str(b), "--threshold", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.output.strip().splitlines()[-1])
    assert -1.0 <= verdict["cosine"] <= 1.0 and verdict["threshold"] == 0.3
    gallery = tmp_path / "gallery"
    for name in ("Person_00", "Person_01"):
        (gallery / name).mkdir(parents=True)
        for index in (1, 2):
            (gallery / name / f"{name}_{index:04d}.jpg").write_bytes((identities / name / f"{name}_{index:04d}.jpg").read_bytes())
    result = CliRunner().invoke(main, ["face", "enroll", str(gallery), "--model", export_dir, "--out",
                                       str(tmp_path / "gallery.npz")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["face", "identify", str(identities / "Person_00" / "Person_00_0003.jpg"),
                                       "--gallery", str(tmp_path / "gallery.npz"), "--model", export_dir,
                                       "--threshold", "-1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["identity"] in {"Person_00", "Person_01"}


def test_enrollment_study_measures_a_given_embedding_export_without_training(embed_export, identities, tmp_path):
    """Issue 16's AT&T check runs the 30/10 protocol with a model trained elsewhere (--export): no run is
    trained, every artifact and k is measured, and a folder without an embedding export is one error line."""
    from edge_cnn.studies import enrollment_protocol as study

    people = tmp_path / "people"
    people.mkdir()
    for person in identities.iterdir():
        if person.name.startswith("Person_"):
            (people / person.name).symlink_to(person, target_is_directory=True)
    out = tmp_path / "out"
    assert study.main(["--att", str(people), "--out", str(out), "--unseen", "3", "--shots", "1,2", "--formats",
                       "tflite", "--export", str(embed_export.manifest_path.parent)]) == 0
    report = json.loads((out / "enrollment_protocol.json").read_text())
    assert not (out / "run").exists() and "none of these people" in report["trained_on"]
    assert {(row["Artifact"], row["k (enrolled/person)"]) for row in report["rows"]} == {
        (artifact, k) for artifact in ("tflite fp32", "tflite int8") for k in (1, 2)}
    assert all(row["People"] == 3 and 0 <= row["Top-1 (%)"] <= 100 for row in report["rows"])
    assert study.main(["--att", str(people), "--out", str(out), "--export", str(tmp_path)]) == 2


def test_pipeline_suggests_the_tasks_own_verb_and_explain_refuses_an_embed_run(embed_run, identities, tmp_path):
    """The pipeline's closing "next:" lines come from the task table (an embed run: `face verify`, no
    Grad-CAM), and explain names the task instead of miscounting classes."""
    from edge_cnn.pipeline import PipelineResult, next_commands

    commands = next_commands(PipelineResult(embed_run, embed_run / "export", [], {}))
    assert commands[0].startswith(f"edgecnn face verify {embed_run / 'export'} ")
    assert not any(command.startswith(("edgecnn predict", "edgecnn explain")) for command in commands)
    image = next(identities.rglob("*.jpg"))
    result = CliRunner().invoke(main, ["explain", str(embed_run), str(image), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "'embed' run" in result.output and "Traceback" not in result.output
