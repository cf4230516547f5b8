"""(path, class index) lists -> a ``tf.data`` pipeline of normalised batches and one-hot labels.

Decoding, colour conversion and resizing are ``PreprocessSpec.load_image`` (called through
``tf.numpy_function``) and normalisation is ``PreprocessSpec.normalize``: the very code the
export calibration, parity checks and the runtime use, so an evaluation batch equals
``spec(paths)`` exactly. Decoded images are cached in memory, so only the first epoch decodes.
"""

from __future__ import annotations

from typing import Sequence

from edge_cnn.data.augment import AugmentConfig, batch_mixer, pixel_augmenter
from edge_cnn.errors import EdgeCNNError
from edge_cnn.keras import tf
from edge_cnn.preprocess import PreprocessSpec


def make_dataset(
    items: Sequence[tuple[str, int]],
    spec: PreprocessSpec,
    num_classes: int,
    batch_size: int = 32,
    training: bool = False,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batches ``(x, y)``: x float32 (N, H, W, C) normalised, y float32 one-hot (N, num_classes).

    Training: reshuffled every epoch (seeded), augmented, mixed. Evaluation: in ``items``' order,
    untouched. Augmentation runs on whole batches (vectorised), before normalisation.
    """
    if not items:
        raise EdgeCNNError("cannot build a data pipeline from an empty list of images")
    if batch_size < 1:
        raise EdgeCNNError(f"batch size {batch_size} must be at least 1")
    labels = [int(label) for _, label in items]
    if min(labels) < 0 or max(labels) >= num_classes:
        raise EdgeCNNError(f"class indices must lie in 0..{num_classes - 1}; got {min(labels)}..{max(labels)}")
    paths = [str(path) for path, _ in items]
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(image_loader(spec, num_classes), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    augment = augment if (training and augment is not None and augment.active) else None
    if augment is not None and augment.changes_pixels:
        augmenter = pixel_augmenter(augment, seed)  # sequential map: random draws in a fixed order
        dataset = dataset.map(lambda x, y: (augmenter(x), y))
    dataset = dataset.map(lambda x, y: (spec.normalize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None and augment.mixes:
        dataset = dataset.map(batch_mixer(augment, seed))
    options = tf.data.Options()  # file-based sharding cannot split a list of paths: shard batches
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def image_loader(spec: PreprocessSpec, num_classes: int | None):
    """(path, label) -> (uint8 HxWxC pixels with a static shape, label): one-hot float32 over
    ``num_classes``, or the index as given when None (the embed route's margin head takes indices)."""
    shape = (spec.height, spec.width, spec.channels)

    def decode(path: bytes):
        return spec.load_image(path.decode("utf-8"))

    def load(path, label):
        pixels = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        pixels.set_shape(shape)
        return pixels, label if num_classes is None else tf.one_hot(label, num_classes, dtype=tf.float32)

    return load
