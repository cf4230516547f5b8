"""The faces_lfw study on a tiny synthetic LFW whose answer is known. Fake faces live in a 12-dimensional
"face space" of blocky textures shared by everyone (as real faces share a low-dimensional one): a person is
a random point of it, each photo adds a little noise. A same-person pair is then nearly identical and a
different-person pair is two unrelated points, so every method must rank every genuine pair above every
impostor pair (AUC 1). Raw pixels and LBP must also verify every pair at the thresholds chosen on the other
folds; whitened Eigenfaces estimates each component's spread from only 32 people here, so an unseen
impostor pair can land near the threshold and it must reach 90% rather than 100%."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_cnn.data.pairs import read_pairs
from edge_cnn.studies import lfw_baselines
from edge_cnn.studies.lfw_baselines import compare, eigenfaces, lbp_histograms, main, minus_chi_square

FOLDS, PER_FOLD, PEOPLE_PER_FOLD, IMAGES, FACE_SPACE = 3, 12, 16, 3, 12


def make_people(root: Path) -> tuple[Path, Path]:
    """(pairs.txt, images): 3 person-disjoint folds of 12 matched + 12 mismatched pairs, 112x112 JPEGs."""
    rng = np.random.default_rng(0)
    bases = np.kron(rng.normal(0, 1, (FACE_SPACE, 14, 14)), np.ones((8, 8)))
    images = root / "images"
    lines = [f"{FOLDS}\t{PER_FOLD}"]
    for fold in range(FOLDS):
        names = [f"Person_F{fold}P{k}" for k in range(PEOPLE_PER_FOLD)]
        for name in names:
            texture = 125 + 12 * np.tensordot(rng.normal(0, 1, FACE_SPACE), bases, axes=1)
            (images / name).mkdir(parents=True)
            for index in range(1, IMAGES + 1):
                grey = np.clip(texture + rng.normal(0, 2, texture.shape), 0, 255).astype(np.uint8)
                Image.fromarray(np.stack([grey] * 3, axis=-1)).save(images / name / f"{name}_{index:04d}.jpg", quality=95)
        lines += [f"{names[k]}\t1\t{2 + k % 2}" for k in range(PER_FOLD)]
        lines += [f"{names[k]}\t3\t{names[(k + 1) % PEOPLE_PER_FOLD]}\t2" for k in range(PER_FOLD)]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs, images


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    return make_people(tmp_path_factory.mktemp("people"))


def test_chi_square_by_hand():
    a = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]])
    # (0.25^2 / 0.75) + (0.25^2 / 1.25) = 0.0833... + 0.05; equal rows: 0; empty bins ignored
    np.testing.assert_allclose(minus_chi_square(a, b), [-(0.0625 / 0.75 + 0.0625 / 1.25), 0.0])


def test_lbp_histograms_are_normalised_per_cell(people):
    _, images = people
    paths = [str(path) for path in sorted(images.glob("*/*.jpg"))[:2]]
    features = lbp_histograms(paths)
    assert features.shape == (2, 7 * 7 * 59)
    np.testing.assert_allclose(features.reshape(2, 49, 59).sum(axis=2), 1.0, rtol=1e-5)


def test_every_baseline_verifies_the_known_answer(people, tmp_path):
    pairs, images = people
    rows = {row["Method"]: row for row in compare(pairs, images, components=FACE_SPACE, with_dlib=True)}
    assert len(rows) == 4
    for method, row in rows.items():
        if method.startswith("dlib"):
            continue
        assert row["AUC"] == 1.0 and row["ms per face"] > 0, row
        if method.startswith("Eigenfaces"):
            assert row["Accuracy (%)"] >= 90.0, row
        else:
            assert row["Accuracy (%)"] == 100.0 and row["Std (pp)"] == 0.0, row
    (dlib,) = [row for method, row in rows.items() if method.startswith("dlib")]
    if not all(importlib.util.find_spec(name) for name in ("face_recognition", "face_recognition_models")):
        assert dlib["Note"].startswith("skipped: face_recognition is not installed")
    else:  # dlib's network embeds faces, not these textures: measured, with no known answer
        assert 0.0 <= dlib["Accuracy (%)"] <= 100.0 and dlib["ms per face"] > 0 and 0.0 <= dlib["AUC"] <= 1.0, dlib
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # importing face_recognition turns it on; the runtime needs it off


def test_dlib_row_is_skipped_cleanly_where_absent(people, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_face_recognition(name, *args, **kwargs):
        if name.startswith("face_recognition"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_face_recognition)
    pairs, images = people
    (row,) = lfw_baselines.dlib_rows(read_pairs(pairs, images))
    assert row["Note"].startswith("skipped: face_recognition is not installed") and "Accuracy (%)" not in row


def test_eigenfaces_fits_each_fold_without_its_people(people, monkeypatch):
    """The PCA of test fold k never sees an image of fold k's people."""
    from edge_cnn.baselines import Eigenfaces

    pairs_txt, images = people
    pairs = read_pairs(pairs_txt, images)
    fitted_sets = []
    original = Eigenfaces.fit

    def recording_fit(self, faces, labels):
        fitted_sets.append(len(faces))
        return original(self, faces, labels)

    monkeypatch.setattr(Eigenfaces, "fit", recording_fit)
    result = eigenfaces(pairs, components=FACE_SPACE)
    named = {fold: {path for pair in pairs.in_folds([fold]) for path in (pair.path_a, pair.path_b)}
             for fold in range(1, FOLDS + 1)}
    # fold k's PCA is fitted on exactly the images the other folds' pairs name (the folds share no person)
    assert fitted_sets == [sum(len(named[other]) for other in named if other != fold) for fold in named]
    assert min(result.result.fold_accuracy) >= 0.9 and len(result.result.fold_threshold) == FOLDS
    assert result.result.auc == 1.0
    with pytest.raises(Exception, match="components"):
        eigenfaces(pairs, components=500)


def test_main_writes_the_report_with_machine_and_versions(people, tmp_path, capsys):
    pairs, images = people
    assert main(["--pairs", str(pairs), "--data", str(images), "--components", str(FACE_SPACE), "--no-dlib",
                 "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "faces_lfw.json").read_text())
    text = json.dumps(report)
    assert "Raw pixels" in text and "cpu_flags" in text and "scikit-image" in text
    assert capsys.readouterr().out.startswith("machine: ")
    bad = main(["--pairs", str(tmp_path / "none.txt"), "--data", str(images), "--out", str(tmp_path / "o2")])
    assert bad == 2 and "pairs file" in capsys.readouterr().err


def test_test_folds_evaluate_every_method_on_those_folds_only(people, tmp_path):
    """The two-way protocol for a model trained on the other folds' people: the baselines are scored on the
    same folds, each threshold chosen on the other evaluated folds."""
    pairs_txt, images = people
    pairs = read_pairs(pairs_txt, images)
    result = eigenfaces(pairs, components=FACE_SPACE, test_folds=[2, 3]).result
    assert result.test_folds == [2, 3] and len(result.fold_accuracy) == 2
    assert result.genuine_pairs == 2 * PER_FOLD and result.auc == pytest.approx(1.0)
    rows = compare(pairs_txt, images, components=FACE_SPACE, with_dlib=False, test_folds=[2, 3])
    assert len(rows) == 3 and all(row["AUC"] == pytest.approx(1.0) for row in rows)
    assert main(["--pairs", str(pairs_txt), "--data", str(images), "--components", str(FACE_SPACE), "--no-dlib",
                 "--test-folds", "2-3", "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "faces_lfw.json").read_text())
    assert "test folds [2, 3]" in json.dumps(report)
    assert main(["--pairs", str(pairs_txt), "--data", str(images), "--flip", "--out", str(tmp_path / "o2")]) == 2
