"""Face enrollment and identification round trip (embedding model stood in by colour statistics)."""

import inspect
import re
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_cnn.errors import EdgeCNNError
from edge_cnn.face import Gallery, enroll, identify
from edge_cnn.face.gallery import DEFAULT_THRESHOLD
from edge_cnn.io import sha256_file
from edge_cnn.preprocess import PreprocessSpec

COLOURS = {"ana": (220, 30, 30), "bo": (30, 220, 30), "cy": (30, 30, 220)}


class ColourEmbedder:
    """Stands in for Predictor.embed: the image's mean colour, centred and L2-normalised."""

    def __init__(self, source="model-a", centring=None):
        self.manifest = types.SimpleNamespace(source_sha256=source)
        self.artifact = types.SimpleNamespace(optimization={"embedding": centring} if centring else {})
        self.spec = PreprocessSpec(height=8, width=8)

    def embed(self, images):
        single = not isinstance(images, list)
        batch = self.spec(images if not single else [images]).reshape(-1, 64, 3).mean(axis=1) - 0.4
        vectors = batch / np.linalg.norm(batch, axis=1, keepdims=True)
        return vectors[0] if single else vectors


def _noise_image(path, seed, square):
    """Dark noise like the squares' background, with a green square or none: no enrolled person."""
    image = np.random.default_rng(100 + seed).integers(0, 60, (32, 32, 3), dtype=np.uint8)
    if square:
        image[10:18, 12:20] = (40, 230, 40)
    Image.fromarray(image).save(path)
    return path


def _image(path, colour, seed):
    noise = np.random.default_rng(seed).integers(-15, 15, (16, 16, 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def gallery_dir(tmp_path):
    for name, colour in COLOURS.items():
        (tmp_path / "gallery" / name).mkdir(parents=True)
        for i in range(2):
            _image(tmp_path / "gallery" / name / f"{i}.png", colour, seed=i)
    return tmp_path / "gallery"


def test_enroll_identify_round_trip(gallery_dir, tmp_path):
    embedder = ColourEmbedder()
    (gallery_dir / "cy" / "broken.png").write_bytes(b"not a png")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"stands in for the artifact")
    gallery, skipped = enroll(embedder, gallery_dir, model=model)
    assert gallery.names == ["ana", "bo", "cy"] and gallery.counts == [2, 2, 2]
    assert [s["path"] for s in skipped] == [str(gallery_dir / "cy" / "broken.png")]
    np.testing.assert_allclose(np.linalg.norm(gallery.centroids, axis=1), 1.0, rtol=1e-6)

    gallery.save(tmp_path / "gallery.npz")
    loaded = Gallery.load(tmp_path / "gallery.npz")
    assert loaded.names == gallery.names and loaded.model == str(model.resolve())
    assert loaded.model_sha256 == sha256_file(model) and loaded.enrolled_model() == str(model.resolve())
    probes = [_image(tmp_path / f"{name}.png", colour, seed=9) for name, colour in COLOURS.items()]
    stranger = _image(tmp_path / "stranger.png", (200, 200, 40), seed=9)
    results = identify(embedder, loaded, probes + [stranger], threshold=0.95)
    assert [r.identity for r in results] == ["ana", "bo", "cy", "unknown"]
    assert results[-1].nearest in COLOURS and results[-1].score < 0.95
    assert all(r.score > 0.95 for r in results[:3])
    assert results[0].to_dict()["path"] == str(probes[0])


def test_default_threshold_accepts_enrolled_people_and_rejects_a_stranger(gallery_dir, tmp_path):
    embedder = ColourEmbedder()
    gallery, _ = enroll(embedder, gallery_dir)
    probes = [_image(tmp_path / f"{name}.png", colour, seed=5) for name, colour in COLOURS.items()]
    stranger = _image(tmp_path / "stranger.png", (200, 200, 40), seed=5)  # cosine ~0.4 to the nearest
    results = identify(embedder, gallery, probes + [stranger])
    assert [r.identity for r in results] == ["ana", "bo", "cy", "unknown"]
    assert results[-1].score < DEFAULT_THRESHOLD <= min(r.score for r in results[:3])
    assert inspect.signature(identify).parameters["threshold"].default == DEFAULT_THRESHOLD == 0.75


def test_gallery_from_another_model_is_refused(gallery_dir, tmp_path):
    gallery, _ = enroll(ColourEmbedder("model-a"), gallery_dir)
    with pytest.raises(EdgeCNNError, match="another model"):
        identify(ColourEmbedder("model-b"), gallery, [gallery_dir / "ana" / "0.png"])


CENTRED = {"centred": True, "centre": "mean head_pool feature", "centre_images": "training split",
           "centre_count": 240, "centre_norm": 2.5}


def test_gallery_from_another_export_of_the_same_model_is_refused(gallery_dir, tmp_path):
    """Same Keras model, embeddings centred differently (or not at all): another space, so refused; the
    record survives save/load, and float noise in the centre's norm of a re-export is tolerated."""
    gallery, _ = enroll(ColourEmbedder(centring=CENTRED), gallery_dir)
    gallery.save(tmp_path / "g.npz")
    loaded = Gallery.load(tmp_path / "g.npz")
    probe = [gallery_dir / "ana" / "0.png"]
    assert identify(ColourEmbedder(centring={**CENTRED, "centre_norm": 2.5000001}), loaded, probe)[0].identity == "ana"
    for other in (None, {**CENTRED, "centre_norm": 2.7}, {**CENTRED, "centre_images": "--calib-data images"}):
        with pytest.raises(EdgeCNNError, match="centred differently"):
            identify(ColourEmbedder(centring=other), loaded, probe)
    uncentred, _ = enroll(ColourEmbedder(), gallery_dir)
    with pytest.raises(EdgeCNNError, match="another export"):
        identify(ColourEmbedder(centring=CENTRED), uncentred, probe)


def test_empty_or_missing_gallery(tmp_path):
    (tmp_path / "empty" / "nobody").mkdir(parents=True)
    with pytest.raises(EdgeCNNError, match="no person folders"):
        enroll(ColourEmbedder(), tmp_path / "empty")
    with pytest.raises(EdgeCNNError, match="does not exist"):
        enroll(ColourEmbedder(), tmp_path / "missing")
    with pytest.raises(EdgeCNNError, match="does not exist"):
        Gallery.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"zip? no")
    with pytest.raises(EdgeCNNError, match="not an edgecnn gallery"):
        Gallery.load(tmp_path / "bad.npz")


def test_face_cli_end_to_end_on_an_exported_embedding(tiny_run_dir, tmp_path):
    """Real model: export --embedding, enroll red/blue squares as two people, identify held-out squares."""
    import json
    import shutil

    from click.testing import CliRunner
    from conftest import make_square_images

    from edge_cnn.cli import main

    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    cli = CliRunner()
    assert cli.invoke(main, ["export", str(run), "--format", "tflite", "--embedding"]).exit_code == 0
    make_square_images(tmp_path / "gallery", per_class=4, seed=1)  # people "red" and "blue"
    gallery = tmp_path / "g.npz"
    enroll = ["face", "enroll", str(tmp_path / "gallery"), "--out"]
    enrolled = cli.invoke(main, [*enroll, str(gallery), "--model", str(run / "export")])
    assert enrolled.exit_code == 0, enrolled.output
    assert Gallery.load(gallery).names == ["blue", "red"] and Gallery.load(gallery).counts == [4, 4]

    probes = [str(p) for p, _ in make_square_images(tmp_path / "probes", per_class=3, seed=7)]
    strangers = [str(_noise_image(tmp_path / f"stranger{i}.png", seed=i, square=i % 2 == 0)) for i in range(4)]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    identify = ["face", "identify", "--gallery", str(gallery), "--json"]  # the default threshold
    identified = cli.invoke(main, [*identify, *probes, *strangers, str(tmp_path / "broken.png")])
    assert identified.exit_code == 2 and "broken.png" in identified.stderr
    results = [json.loads(line) for line in identified.stdout.splitlines()]
    assert [r["path"] for r in results] == probes + strangers
    assert [r["identity"] for r in results] == [Path(p).parent.name for p in probes] + ["unknown"] * len(strangers)
    # at the default threshold: enrolled people near 1, a green square or bare noise well below it
    assert min(r["score"] for r in results[: len(probes)]) > 0.9
    assert max(r["score"] for r in results[len(probes) :]) < DEFAULT_THRESHOLD - 0.2

    strict = cli.invoke(main, [*identify, *probes, "--threshold", "1.01"])
    assert strict.exit_code == 0
    results = [json.loads(line) for line in strict.stdout.splitlines()]
    assert {r["identity"] for r in results} == {"unknown"}
    assert [r["nearest"] for r in results] == [Path(p).parent.name for p in probes]

    plain = run / "plain_export"
    assert cli.invoke(main, ["export", str(run), "--format", "tflite", "--out", str(plain)]).exit_code == 0
    refused = cli.invoke(main, [*enroll, str(tmp_path / "x.npz"), "--model", str(plain)])
    assert refused.exit_code == 2 and "no embedding output" in refused.output
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"centroids": np.full((3, 3), np.nan, np.float32)}, "NaN or infinity"),
        ({"centroids": np.eye(3, dtype=np.float32)[:2]}, "3 names, 2 centroids and 3 counts"),
        ({"counts": np.array([1.5, 2.0, 2.0])}, "not integers"),
        ({"names": np.array([1, 2, 3])}, "not a list of text"),
        ({"names": np.array("ana")}, "not a list of text"),
        ({"centroids": np.ones(3, np.float32)}, "embedding size"),
        ({"names": np.array(["ana", "ana", "bo"])}, "enrolled twice"),
        ({"centroids": np.eye(3, dtype=np.float32) * 2}, "unit length"),
        ({"source_sha256": np.array([1, 2])}, "source_sha256 not text"),
        ({"counts": None}, "missing counts"),
    ],
)
def test_gallery_contents_are_checked_on_load(change, problem, gallery_dir, tmp_path):
    """A gallery file of the right format but wrong contents is refused whole, naming the file and the fix."""
    gallery, _ = enroll(ColourEmbedder(), gallery_dir)
    gallery.save(tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as data:
        arrays = {key: data[key] for key in data.files}
    arrays.update(change)
    np.savez(tmp_path / "bad.npz", **{key: value for key, value in arrays.items() if value is not None})
    with pytest.raises(EdgeCNNError, match=f"gallery {re.escape(str(tmp_path / 'bad.npz'))} is not a valid edgecnn gallery .*{problem}.*"
                       "re-run `edgecnn face enroll`"):
        Gallery.load(tmp_path / "bad.npz")


def test_gallery_of_an_older_version_still_loads(gallery_dir, tmp_path):
    """Galleries written before the model's sha256 and centring were recorded: read, the model as given."""
    gallery, _ = enroll(ColourEmbedder(), gallery_dir)
    np.savez(tmp_path / "old.npz", names=np.array(gallery.names), centroids=gallery.centroids,
             counts=np.array(gallery.counts), source_sha256=np.array("model-a"), model=np.array("runs/faces/export"))
    loaded = Gallery.load(tmp_path / "old.npz")
    assert loaded.model_sha256 == "" and loaded.centring == "" and loaded.enrolled_model() == "runs/faces/export"
    np.testing.assert_array_equal(loaded.centroids, gallery.centroids)
