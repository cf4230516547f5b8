"""Margin-softmax heads against hand-computed logits, and a training model whose saved part loads safely."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_cnn.errors import EdgeCNNError, ModelFileError
from edge_cnn.keras import keras, layers, tf
from edge_cnn.keras_file import check_keras_file, load_keras_model
from edge_cnn.train.margin import MarginHead, margin_logits, margin_loss, margin_training_model

# Class centres w0 = (1, 0), w1 = (0, 1); one embedding of label 0 at angle a to w0; s = 2, m = 0.5.
# a = 30 deg: cos(theta0) = 0.866025, cos(theta1) = 0.5
#   softmax: 2 * (0.866025, 0.5)                       = (1.732051, 1.0)
#   cosface: (2 * (0.866025 - 0.5), 2 * 0.5)          = (0.732051, 1.0)
#   arcface: (2 * cos(0.523599 + 0.5), 1.0) = (2 * 0.520296, 1.0) = (1.040592, 1.0)
#            loss -log softmax_0 = log(1 + e^(1.0 - 1.040592)) = 0.673057
# a = 170 deg: cos(theta0) = -0.984808, cos(theta1) = sin(170 deg) = 0.173648
#   theta0 + m passes pi: cos(theta0) < cos(pi - 0.5) = -0.877583, so the fallback
#   cos(theta0) - m * sin(m) = -0.984808 - 0.239713 = -1.224521 applies -> (-2.449041, 0.347296)
#   (cos(theta0 + m) itself would be -0.949786, a smaller penalty for a worse angle);
#   easy margin: cos(theta0) <= 0 keeps cos(theta0)              -> (-1.969616, 0.347296)
CENTRES = np.array([[1.0, 0.0], [0.0, 1.0]])
HAND_LOGITS = [
    (30, "softmax", 0.0, False, (1.732051, 1.0)),
    (30, "cosface", 0.5, False, (0.732051, 1.0)),
    (30, "arcface", 0.5, False, (1.040592, 1.0)),
    (30, "arcface", 0.5, True, (1.040592, 1.0)),
    (170, "arcface", 0.5, False, (-2.449041, 0.347296)),
    (170, "arcface", 0.5, True, (-1.969616, 0.347296)),
]


def at_angle(degrees: float, length: float = 1.0) -> np.ndarray:
    return length * np.array([[math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]])


@pytest.mark.parametrize("degrees, kind, margin, easy, expected", HAND_LOGITS)
def test_hand_computed_logits(degrees, kind, margin, easy, expected):
    logits = margin_logits(at_angle(degrees), CENTRES, [0], kind, scale=2.0, margin=margin, easy_margin=easy)
    np.testing.assert_allclose(logits.numpy()[0], expected, atol=1e-5)
    # neither the embedding's length nor the centres' lengths matter: both are normalised
    scaled = margin_logits(at_angle(degrees, 7.0), CENTRES * [[3.0, 0.2]], [0], kind, 2.0, margin, easy)
    np.testing.assert_allclose(scaled.numpy(), logits.numpy(), atol=1e-5)


def test_margin_moves_only_the_label_column_and_sets_the_loss():
    batch = np.concatenate([at_angle(30), at_angle(60)])
    logits = margin_logits(batch, CENTRES, [0, 1], "arcface", 2.0, 0.5).numpy()
    # row 1 (label 1, 30 deg from w1): its label column gets 2 * cos(30 deg + 0.5), the other 2 * cos(60 deg)
    np.testing.assert_allclose(logits, [[1.040592, 1.0], [1.0, 1.040592]], atol=1e-5)
    loss = margin_loss()(np.array([0, 1]), logits)
    assert float(loss) == pytest.approx(0.673057, abs=1e-5)


def test_gradient_is_finite_where_the_embedding_equals_its_centre():
    embedding = tf.Variable([[1.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = margin_loss()([0], margin_logits(embedding, CENTRES, [0], "arcface", 64.0, 0.5))
    assert np.all(np.isfinite(tape.gradient(loss, embedding).numpy()))


@pytest.mark.parametrize(
    "kind, scale, margin, expected",
    [
        ("sphereface", 64.0, 0.5, "unknown"),
        ("arcface", 0.0, 0.5, "positive"),
        ("arcface", 64.0, 2.0, "out of range"),
        ("cosface", 64.0, -0.1, "out of range"),
        ("softmax", 64.0, 0.3, "no margin"),
        ("arcface", "64", 0.5, "must be numbers"),
    ],
)
def test_bad_head_settings_are_refused(kind, scale, margin, expected):
    with pytest.raises(EdgeCNNError, match=expected):
        margin_logits(at_angle(30), CENTRES, [0], kind, scale, margin)
    with pytest.raises(EdgeCNNError, match=expected):
        MarginHead(2, kind, scale, margin)


def test_label_beyond_the_classes_is_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="number of classes"):
        margin_logits(at_angle(30), CENTRES, [2], "cosface", 2.0, 0.3)


def tiny_embedding_model():
    inputs = keras.Input((8, 8, 1), name="image")
    h = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(inputs, layers.Dense(3, name="embedding")(h), name="tiny_embedder")


def test_training_model_trains_and_only_the_embedding_model_is_saved(tmp_path):
    keras.utils.set_random_seed(0)
    # three "people": a bright patch in a different corner of a dark image
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 16)
    images = rng.uniform(0.0, 0.1, (48, 8, 8, 1)).astype("float32")
    for index, label in enumerate(labels):
        row, column = [(0, 0), (0, 4), (4, 0)][label]
        images[index, row : row + 4, column : column + 4] = 1.0
    embedder = tiny_embedding_model()
    trainer = margin_training_model(embedder, 3, "cosface", scale=8.0, margin=0.2)
    assert trainer.get_layer("tiny_embedder") is embedder
    trainer.compile(keras.optimizers.Adam(0.05), margin_loss())
    history = trainer.fit([images, labels], labels, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]

    embedder.save(tmp_path / "embedder.keras")
    reloaded = load_keras_model(tmp_path / "embedder.keras")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), embedder.predict(images, verbose=0), atol=1e-5)
    trainer.save(tmp_path / "trainer.keras")
    with pytest.raises(ModelFileError, match="MarginHead"):
        check_keras_file(tmp_path / "trainer.keras")


def test_training_model_needs_a_flat_embedding():
    inputs = keras.Input((8, 8, 1))
    feature_map = keras.Model(inputs, layers.Conv2D(2, 3)(inputs), name="maps")
    with pytest.raises(EdgeCNNError, match="one \\(batch, dimensions\\) output"):
        margin_training_model(feature_map, 3)
