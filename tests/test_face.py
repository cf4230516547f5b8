"""Face enrollment and identification round trip (embedding model stood in by colour statistics)."""

import types

import numpy as np
import pytest
from PIL import Image

from edge_cnn.errors import EdgeCNNError
from edge_cnn.face import Gallery, enroll, identify
from edge_cnn.preprocess import PreprocessSpec

COLOURS = {"ana": (220, 30, 30), "bo": (30, 220, 30), "cy": (30, 30, 220)}


class ColourEmbedder:
    """Stands in for Predictor.embed: the image's mean colour, centred and L2-normalised."""

    def __init__(self, source="model-a"):
        self.manifest = types.SimpleNamespace(source_sha256=source)
        self.spec = PreprocessSpec(height=8, width=8)

    def embed(self, images):
        single = not isinstance(images, list)
        batch = self.spec(images if not single else [images]).reshape(-1, 64, 3).mean(axis=1) - 0.4
        vectors = batch / np.linalg.norm(batch, axis=1, keepdims=True)
        return vectors[0] if single else vectors


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
    gallery, skipped = enroll(embedder, gallery_dir, model="m.onnx")
    assert gallery.names == ["ana", "bo", "cy"] and gallery.counts == [2, 2, 2]
    assert [s["path"] for s in skipped] == [str(gallery_dir / "cy" / "broken.png")]
    np.testing.assert_allclose(np.linalg.norm(gallery.centroids, axis=1), 1.0, rtol=1e-6)

    gallery.save(tmp_path / "gallery.npz")
    loaded = Gallery.load(tmp_path / "gallery.npz")
    assert loaded.names == gallery.names and loaded.model == "m.onnx"
    probes = [_image(tmp_path / f"{name}.png", colour, seed=9) for name, colour in COLOURS.items()]
    stranger = _image(tmp_path / "stranger.png", (200, 200, 40), seed=9)
    results = identify(embedder, loaded, probes + [stranger], threshold=0.95)
    assert [r.identity for r in results] == ["ana", "bo", "cy", "unknown"]
    assert results[-1].nearest in COLOURS and results[-1].score < 0.95
    assert all(r.score > 0.95 for r in results[:3])
    assert results[0].to_dict()["path"] == str(probes[0])


def test_gallery_from_another_model_is_refused(gallery_dir, tmp_path):
    gallery, _ = enroll(ColourEmbedder("model-a"), gallery_dir)
    with pytest.raises(EdgeCNNError, match="another model"):
        identify(ColourEmbedder("model-b"), gallery, [gallery_dir / "ana" / "0.png"])


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
