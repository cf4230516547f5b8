"""Classical baselines: ROC AUC, Eigenfaces, HOG+SVM and Haar on small real or synthetic sets."""

import numpy as np
import pytest
from PIL import Image

from edge_cnn.baselines import Eigenfaces, HaarFaceDetector, HogPeopleScorer, roc_auc
from edge_cnn.errors import EdgeCNNError

cv2 = pytest.importorskip("cv2", reason="opencv-python-headless is in the dev extra")


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([1, 1], [0.1, 0.2])


def test_eigenfaces_identifies_held_out_faces():
    rng = np.random.default_rng(0)
    prototypes = rng.uniform(0, 255, (5, 12, 10))
    faces = np.concatenate([prototypes + rng.normal(0, 20, prototypes.shape) for _ in range(4)])
    labels = np.tile(np.arange(5), 4)
    model = Eigenfaces(components=8).fit(faces[:15], labels[:15])
    assert model.basis_.shape == (8, 120)
    assert (model.predict(faces[15:]) == labels[15:]).all()


def test_hog_scores_people_above_background(shared_data):
    scorer = HogPeopleScorer()
    people = sorted((shared_data / "pedestrian" / "person").glob("inria_*.png"))[:15]
    background = sorted((shared_data / "pedestrian" / "background").glob("inria_neg_*.png"))[:15]
    scores = [scorer.score(np.asarray(Image.open(p).convert("RGB"))) for p in people + background]
    assert roc_auc([1] * len(people) + [0] * len(background), scores) > 0.8
    with pytest.raises(EdgeCNNError, match="64x128"):
        scorer.score(np.zeros((64, 64, 3), np.uint8))


def test_haar_finds_faces_in_the_embedded_face_set():
    from skimage.data import lfw_subset

    patches = (lfw_subset() * 255).astype(np.uint8)  # 100 faces then 100 non-faces, 25x25
    detector = HaarFaceDetector()
    faces = np.mean([detector.detections(p) > 0 for p in patches[:30]])
    non_faces = np.mean([detector.detections(p) > 0 for p in patches[100:130]])
    assert faces > non_faces
