"""Model optimization with tensorflow-model-optimization: QAT, magnitude pruning, weight clustering.

Each fine-tunes on the run's training images (already preprocessed by the caller) and
returns the model to export plus the facts measured on it: pruning reports the sparsity
actually reached (not the requested one), clustering the unique values left per kernel.
tfmot needs Keras 2 (tf_keras) functional or Sequential models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.source import ends_in_softmax
from edge_cnn.keras import keras, tf

import tensorflow_model_optimization as tfmot  # noqa: E402  (after edge_cnn.keras: tf.keras is tf_keras)

FINE_TUNE_LR = 1e-4  # fine-tuning a trained model: a tenth of a typical training rate
MAX_BATCH = 32
KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def require_tf_keras(model: Any) -> None:
    """tfmot wraps layers of tf_keras functional/Sequential models only."""
    if not isinstance(model, keras.Model):
        raise EdgeCNNError(
            f"QAT, pruning and clustering need a tf_keras (Keras 2) model, got {type(model).__module__}."
            f"{type(model).__name__}: build it with edge_cnn.keras"
        )
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise EdgeCNNError(
            f"model {model.name!r} is a subclassed Keras model; QAT, pruning and clustering need a functional "
            "or Sequential model"
        )


def quantization_aware(model, x: np.ndarray, y: np.ndarray, epochs: int, verbose: int = 0):
    """``quantize_model`` + fine-tune: fake-quant ranges learned on real data."""
    require_tf_keras(model)
    qat = tfmot.quantization.keras.quantize_model(_clone(model))
    history = _fine_tune(qat, x, y, epochs, verbose, ends_in_softmax(model))
    return qat, {"method": "qat", "epochs": epochs, "fine_tune_loss": history}


def prune(model, x: np.ndarray, y: np.ndarray, target: float, epochs: int, verbose: int = 0):
    """Magnitude pruning to ``target`` sparsity, reached exactly at the last fine-tuning step, then stripped."""
    require_tf_keras(model)
    steps = epochs * math.ceil(len(x) / _batch_size(len(x)))
    frequency = max(1, (steps - 1) // 20)  # tfmot's default of 100 never prunes a short fine-tune
    end_step = max(1, frequency * ((steps - 1) // frequency))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=float(target), begin_step=0, end_step=end_step, frequency=frequency
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(_clone(model), pruning_schedule=schedule)
    callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
    history = _fine_tune(pruned, x, y, epochs, verbose, ends_in_softmax(model), callbacks)
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    per_layer = kernel_sparsity(stripped)
    return stripped, {
        "method": "prune",
        "target_sparsity": float(target),
        "epochs": epochs,
        "fine_tune_loss": history,
        "measured_sparsity": overall_sparsity(stripped),
        "sparsity_per_layer": per_layer,
    }


def cluster(model, x: np.ndarray, y: np.ndarray, clusters: int, epochs: int, verbose: int = 0):
    """Weight clustering (k-means++ centroids) of a clone, fine-tuned, then stripped."""
    require_tf_keras(model)
    clustered = tfmot.clustering.keras.cluster_weights(
        _clone(model),
        number_of_clusters=int(clusters),
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS,
    )
    history = _fine_tune(clustered, x, y, epochs, verbose, ends_in_softmax(model))
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    return stripped, {
        "method": "cluster",
        "clusters": int(clusters),
        "epochs": epochs,
        "fine_tune_loss": history,
        "unique_weights_per_layer": unique_kernel_values(stripped),
    }


def kernels(model) -> dict[str, np.ndarray]:
    """The prunable/clusterable kernel of every Conv2D, DepthwiseConv2D and Dense layer."""
    found = {}
    for layer in model.layers:
        if isinstance(layer, KERNEL_LAYERS):
            weight = layer.depthwise_kernel if isinstance(layer, keras.layers.DepthwiseConv2D) else layer.kernel
            found[layer.name] = weight.numpy()
    return found


def kernel_sparsity(model) -> dict[str, float]:
    return {name: float(np.mean(w == 0)) for name, w in kernels(model).items()}


def overall_sparsity(model) -> float:
    weights = list(kernels(model).values())
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / total) if total else 0.0


def unique_kernel_values(model) -> dict[str, int]:
    return {name: int(np.unique(w).size) for name, w in kernels(model).items()}


def _clone(model):
    """tfmot wraps the given layer objects, so fine-tuning would otherwise change the source model."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _batch_size(samples: int) -> int:
    """At least four steps per epoch, so schedules and fake-quant ranges get several updates."""
    return max(1, min(MAX_BATCH, samples // 4))


def _fine_tune(model, x, y, epochs: int, verbose: int, probabilities: bool, callbacks=(), augment=None,
               teacher=None, cosine_from: float | None = None) -> list[float]:
    """Adam at ``FINE_TUNE_LR`` on the training images (``cosine_from``: a cosine decay from that rate to 0
    over the epochs instead); ``augment`` (``model_space_augmenter``) changes every batch of every epoch;
    ``teacher`` (a model with the same outputs) adds its softened outputs as targets
    (``distill.Distillation``; ``model`` is still the one whose weights change)."""
    if epochs < 1:
        raise EdgeCNNError(f"fine-tuning needs at least 1 epoch (got {epochs})")
    if len(x) == 0 or np.any(y < 0):
        raise EdgeCNNError("fine-tuning needs labelled training images: export a run directory with splits/train.csv")
    if teacher is not None:
        from edge_cnn.export.distill import Distillation

        model = Distillation(model, teacher, probabilities)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not probabilities)
    batch = _batch_size(len(x))
    rate = FINE_TUNE_LR if cosine_from is None else keras.optimizers.schedules.CosineDecay(
        float(cosine_from), epochs * math.ceil(len(x) / batch))
    model.compile(keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])
    if augment is None:
        history = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=verbose,
                            callbacks=list(callbacks))
    else:
        data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=0).batch(batch)
                .map(lambda images, labels: (augment(images), labels)).prefetch(1))
        history = model.fit(data, epochs=epochs, verbose=verbose, callbacks=list(callbacks))
    return [round(float(v), 5) for v in history.history["loss"]]


class BestOnValidation(keras.callbacks.Callback):
    """Keeps the weights of the fine-tuning epoch with the lowest validation loss and puts them back when
    training ends: Keras' ``EarlyStopping(monitor="val_loss", restore_best_weights=True)`` without the stopping.
    The model must be compiled with an ``accuracy`` metric (``_fine_tune`` does), which is recorded too.

    Why: a thinned model's validation accuracy swings between epochs (the pedestrian model pruned to 8/16/48
    channels read 96.4-98.5% over epochs 3-60 on 333 windows), so the last epoch is a draw, and the choice is
    made on validation, never on test. Loss, not accuracy: on 333 windows accuracy moves in steps of 0.3 pp
    and ties often (98.5% at epochs 9, 22, 25 and 41 of that run), and the earliest tie, epoch 9, scored
    97.3% on test against 98.2% for the unpruned model; the loss is continuous and is Keras' default."""

    def __init__(self, x_val: np.ndarray, y_val: np.ndarray):
        super().__init__()
        self.x_val, self.y_val = x_val, np.asarray(y_val)
        self.losses: list[float] = []
        self.accuracies: list[float] = []
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        scores = self.model.evaluate(self.x_val, self.y_val, verbose=0, return_dict=True)
        if not self.losses or scores["loss"] < min(self.losses):
            self._best_weights = self.model.get_weights()
        self.losses.append(float(scores["loss"]))
        self.accuracies.append(round(float(scores["accuracy"]), 5))

    def on_train_end(self, logs=None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)

    def facts(self) -> dict[str, Any]:
        """For the manifest: validation loss and accuracy after each epoch and the (1-based) epoch kept."""
        return {"val_loss_per_epoch": [round(loss, 5) for loss in self.losses],
                "val_accuracy_per_epoch": self.accuracies,
                "kept_epoch": 1 + int(np.argmin(self.losses)) if self.losses else None}


def model_space_augmenter(spec, augment, seed: int = 0):
    """The run's per-image augmentation (``AugmentConfig``; it works on 0..255 pixels) for batches already
    through ``spec``: undo the normalization, augment, normalize again. None without augmentation or for a
    channels-first spec.

    Why: a thinned model is fine-tuned on the same few training images for many epochs, and TAO retrains a
    pruned model with its training spec for that reason. On the pedestrian recipe (60 epochs) validation
    accuracy was 0.3-0.6 pp higher with it at fractions 0.4 and 0.5, test accuracy equal or 0.3 pp lower:
    one or two windows, README.md has the figures."""
    if augment is None or spec.layout != "NHWC":
        return None
    from edge_cnn.data.augment import pixel_augmenter

    pixels = pixel_augmenter(augment, seed)
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    return lambda batch: spec.normalize(pixels((batch * std + mean) / np.float32(spec.scale)))
