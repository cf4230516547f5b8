"""`edgecnn evaluate --protocol lfw` and `edgecnn face verify` on a tiny synthetic LFW with a known answer.

The people are red-square and blue-square "faces" (conftest's square images, which the tiny run's model
separates): a matched pair shows one person (one colour), every mismatched pair a red and a blue person,
so both the Keras model and its fp32/int8 exports must verify every pair correctly.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_square_images

from edge_cnn.cli import main
from edge_cnn.errors import EdgeCNNError, ManifestError
from edge_cnn.face.lfw import REPORT_NAME, ROC_NAME, evaluate_lfw
from edge_cnn.manifest import load_manifest

FOLDS, PER_FOLD = 3, 2
PEOPLE_PER_FOLD = 4  # 2 red, 2 blue people per fold, 3 images each


def make_tiny_lfw(root: Path) -> tuple[Path, Path]:
    """(pairs.txt, image folder): 3 person-disjoint folds of 2 matched + 2 mismatched pairs."""
    images = root / "images"
    lines = [f"{FOLDS}\t{PER_FOLD}"]
    for fold in range(FOLDS):
        people = []
        for k in range(PEOPLE_PER_FOLD):
            colour = "red" if k % 2 == 0 else "blue"
            name = f"{colour.title()}_Person{fold}{k}"
            made = make_square_images(root / "tmp" / name, per_class=3, seed=100 * fold + k)
            (images / name).mkdir(parents=True)
            for index, (path, _) in enumerate([item for item in made if item[0].parent.name == colour], start=1):
                shutil.move(path, images / name / f"{name}_{index:04d}.jpg")
            people.append(name)
        red_a, blue_a, red_b, blue_b = people
        lines += [f"{red_a}\t1\t2", f"{blue_a}\t1\t3"]
        lines += [f"{red_a}\t3\t{blue_b}\t1", f"{blue_a}\t2\t{red_b}\t2"]
    shutil.rmtree(root / "tmp")
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs, images


@pytest.fixture(scope="module")
def tiny_lfw(tmp_path_factory):
    return make_tiny_lfw(tmp_path_factory.mktemp("lfw"))


@pytest.fixture(scope="module")
def embedding_export(tiny_run_dir, tmp_path_factory) -> Path:
    """The tiny run exported with an embedding output, TFLite fp32 + int8."""
    run = shutil.copytree(tiny_run_dir, tmp_path_factory.mktemp("lfwrun") / "run")
    result = CliRunner().invoke(main, ["export", str(run), "--format", "tflite", "--int8", "--embedding"])
    assert result.exit_code == 0, result.output
    return run


def test_keras_run_verifies_every_pair(embedding_export, tiny_lfw, tmp_path):
    pairs, images = tiny_lfw
    report = evaluate_lfw(embedding_export, pairs, images, out=tmp_path / "out")
    (keras_model,) = report.models
    result = keras_model.result
    assert keras_model.kind == "keras fp32" and report.images == 8 * FOLDS  # each image once
    assert result.fold_accuracy == [1.0] * FOLDS and result.mean_accuracy == 1.0 and result.auc == 1.0
    assert len(result.fold_threshold) == FOLDS and result.genuine_pairs == result.impostor_pairs == FOLDS * PER_FOLD
    assert [point.far_target for point in result.operating_points] == [1e-2, 1e-3]
    assert [point.tar for point in result.operating_points] == [1.0, 1.0]
    written = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert written["protocol"] == "lfw" and written["models"][0]["mean_accuracy"] == 1.0
    assert "cpu" in written["machine"] and (tmp_path / "out" / ROC_NAME).stat().st_size > 1000


def test_export_artifacts_are_verified_and_thresholds_stored(embedding_export, tiny_lfw, tmp_path):
    """Every fp32/int8 embedding artifact, through the runtime, in a process that never imports TensorFlow."""
    pairs, images = tiny_lfw
    export = tmp_path / "export"
    shutil.copytree(embedding_export / "export", export)
    code = (
        "import sys, json\n"
        "from edge_cnn.face.lfw import evaluate_lfw\n"
        f"report = evaluate_lfw({str(export)!r}, {str(pairs)!r}, {str(images)!r})\n"
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules\n"
        "print(json.dumps([[m.kind, m.result.mean_accuracy, m.threshold] for m in report.models]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.splitlines()[-1])
    assert sorted(kind for kind, _, _ in measured) == ["tflite fp32", "tflite int8"]
    assert all(accuracy == 1.0 for _, accuracy, _ in measured)
    manifest = load_manifest(export)
    for artifact in manifest.artifacts:
        assert artifact.verification is not None and artifact.verification.protocol == "lfw"
        assert artifact.verification.pairs == 2 * FOLDS * PER_FOLD and artifact.verification.mean_accuracy == 1.0
    assert (export / "lfw" / REPORT_NAME).is_file() and (export / "lfw" / ROC_NAME).is_file()

    # face verify: the stored threshold by default; --threshold overrides it
    cli = CliRunner()
    red = sorted(images.glob("Red_*"))
    blue = sorted(images.glob("Blue_*"))
    same = cli.invoke(main, ["face", "verify", str(export), str(next(red[0].iterdir())), str(next(red[1].iterdir()))])
    assert same.exit_code == 0, same.output
    assert same.stdout.startswith("same\tcosine") and "manifest (lfw, 100.0% ± 0.0)" in same.stdout
    other = cli.invoke(main, ["face", "verify", str(export), str(next(red[0].iterdir())), str(next(blue[0].iterdir())),
                              "--json", "--precision", "int8"])
    verdict = json.loads(other.stdout)
    assert other.exit_code == 0 and verdict["same"] is False and verdict["cosine"] < verdict["threshold"]
    forced = cli.invoke(main, ["face", "verify", str(export), str(next(red[0].iterdir())),
                               str(next(blue[0].iterdir())), "--threshold", "-1", "--json"])
    assert json.loads(forced.stdout)["same"] is True and json.loads(forced.stdout)["threshold_source"] == "--threshold"


def test_evaluate_cli_prints_a_table_and_the_classification_path_still_works(embedding_export, tiny_lfw, tmp_path,
                                                                            square_images):
    pairs, images = tiny_lfw
    cli = CliRunner()
    lfw = cli.invoke(main, ["evaluate", str(embedding_export), "--protocol", "lfw", "--pairs", str(pairs),
                            "--data", str(images), "--out", str(tmp_path / "o"), "--test-folds", "2-3"])
    assert lfw.exit_code == 0, lfw.output
    assert "100.00% ± 0.00" in lfw.stdout and "TAR@FAR 0.01" in lfw.stdout
    report = json.loads((tmp_path / "o" / REPORT_NAME).read_text())
    assert report["models"][0]["test_folds"] == [2, 3] and report["models"][0]["genuine_pairs"] == 4
    classify = cli.invoke(main, ["evaluate", str(embedding_export), "--data", str(square_images), "--json"])
    assert classify.exit_code == 0, classify.output
    assert json.loads(classify.stdout)["images"] == 48


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: [lines[0], lines[1].replace("Red_Person00", "Nobody_Here"), *lines[2:]], "unknown person 'Nobody_Here'"),
        (lambda lines: [lines[0], lines[1].replace("\t2", "\t9"), *lines[2:]], "image 9 of Red_Person00"),
        (lambda lines: lines[:-1], "the file ends after 11 pair line(s)"),
        (lambda lines: ["3\t3", *lines[1:]], "expected matched pair 3 of fold 1"),
    ],
)
def test_bad_pairs_files_are_one_error_line(edit, message, tiny_lfw, tmp_path):
    pairs, images = tiny_lfw
    bad = tmp_path / "bad_pairs.txt"
    bad.write_text("\n".join(edit(pairs.read_text().splitlines())) + "\n")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "no_model"), "--protocol", "lfw",
                                       "--pairs", str(bad), "--data", str(images)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.output


def test_usage_errors_are_one_line(embedding_export, tiny_lfw, tmp_path):
    pairs, images = tiny_lfw
    cli = CliRunner()
    for args, message in [
        ([str(embedding_export), "--data", str(images), "--pairs", str(pairs)], "--pairs belong(s) to --protocol lfw"),
        ([str(embedding_export), "--data", str(images), "--protocol", "lfw"], "needs --pairs"),
        ([str(tmp_path), "--data", str(images), "--protocol", "lfw", "--pairs", str(pairs)], "neither a run directory"),
        ([str(embedding_export), "--protocol", "lfw", "--pairs", str(pairs), "--data", str(images),
          "--test-folds", "1-5"], "not a rising range within 1-3"),
    ]:
        result = cli.invoke(main, ["evaluate", *args])
        assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.output


def test_verify_without_a_stored_threshold_says_how_to_get_one(embedding_export, tiny_lfw):
    _, images = tiny_lfw
    face = str(next(next(images.iterdir()).iterdir()))
    result = CliRunner().invoke(main, ["face", "verify", str(embedding_export / "export"), face, face])
    assert result.exit_code == 2
    assert "no verification threshold" in result.stderr and "--protocol lfw" in result.stderr
    assert "--threshold" in result.stderr


def test_an_export_without_embeddings_is_refused(tiny_run_dir, tiny_lfw, tmp_path):
    pairs, images = tiny_lfw
    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    assert CliRunner().invoke(main, ["export", str(run), "--format", "tflite"]).exit_code == 0
    with pytest.raises(EdgeCNNError, match="--embedding"):
        evaluate_lfw(run / "export", pairs, images)


@pytest.mark.parametrize("value", ["0.3", float("nan"), 5, None])
def test_manifest_verification_field_is_type_checked(embedding_export, tmp_path, value):
    export = shutil.copytree(embedding_export / "export", tmp_path / "export")
    data = json.loads((export / "manifest.json").read_text())
    verification = {"protocol": "lfw", "threshold": value, "mean_accuracy": 0.9, "std_accuracy": 0.01, "pairs": 6000}
    data["artifacts"][0]["verification"] = verification
    (export / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="verification threshold"):
        load_manifest(export)
    verification["threshold"] = 0.3
    (export / "manifest.json").write_text(json.dumps(data))
    assert np.isclose(load_manifest(export).artifacts[0].verification.threshold, 0.3)


def test_flip_test_embeds_face_and_mirror_and_is_what_the_stored_threshold_says(embedding_export, tiny_lfw, tmp_path):
    """``--flip``: each face plus its mirror; the manifest records it, and the runtime then embeds that way."""
    from edge_cnn.numerics import l2_normalize
    from edge_cnn.runtime import Predictor

    pairs, images = tiny_lfw
    export = shutil.copytree(embedding_export / "export", tmp_path / "export")
    faces = [str(path) for path in sorted(images.glob("*/*.jpg"))[:4]]
    predictor = Predictor.load(export, precision="fp32")
    batch = predictor.preprocess(faces)
    expected = l2_normalize(predictor.embed(batch, preprocessed=True, flip=False)
                            + predictor.embed(batch[:, :, ::-1, :].copy(), preprocessed=True, flip=False))
    np.testing.assert_allclose(predictor.embed(faces, flip=True), expected, atol=1e-5)
    assert not np.allclose(predictor.embed(faces, flip=True), predictor.embed(faces, flip=False), atol=1e-4)

    result = CliRunner().invoke(main, ["evaluate", str(export), "--protocol", "lfw", "--pairs", str(pairs),
                                       "--data", str(images), "--flip", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)
    assert sorted(item["kind"] for item in measured) == ["tflite fp32 + flip", "tflite int8 + flip"]
    assert all(item["mean_accuracy"] == 1.0 for item in measured)
    assert all(artifact.verification.flip for artifact in load_manifest(export).artifacts)
    stored = Predictor.load(export, precision="fp32")  # flip=None: what the threshold was measured with
    np.testing.assert_allclose(stored.embed(faces), expected, atol=1e-5)
    unflipped = CliRunner().invoke(main, ["evaluate", str(export), "--protocol", "lfw", "--pairs", str(pairs),
                                          "--data", str(images), "--json"])
    assert unflipped.exit_code == 0 and not any(a.verification.flip for a in load_manifest(export).artifacts)
    detector_flag = CliRunner().invoke(main, ["evaluate", str(export), "--data", str(images), "--flip"])
    assert detector_flag.exit_code == 2 and "--flip belong(s) to --protocol lfw" in detector_flag.stderr


def test_mirror_flips_the_width_axis_in_either_layout():
    from edge_cnn.preprocess import PreprocessSpec

    nhwc = np.arange(2 * 3 * 4 * 3, dtype=np.float32).reshape(2, 3, 4, 3)
    expected = nhwc[:, :, ::-1, :]
    np.testing.assert_array_equal(PreprocessSpec(3, 4).mirror(nhwc), expected)
    nchw = PreprocessSpec(3, 4, layout="NCHW")
    np.testing.assert_array_equal(nchw.mirror(nchw.to_layout(nhwc)), nchw.to_layout(expected))


def test_manifest_verification_flip_must_be_a_boolean(embedding_export, tmp_path):
    export = shutil.copytree(embedding_export / "export", tmp_path / "export")
    data = json.loads((export / "manifest.json").read_text())
    data["artifacts"][0]["verification"] = {"protocol": "lfw", "threshold": 0.3, "mean_accuracy": 0.9,
                                            "std_accuracy": 0.01, "pairs": 6000, "flip": "yes"}
    (export / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="verification flip"):
        load_manifest(export)
