"""Box-annotated photos as training batches: input pixels (letterboxed, or placed by the box-aware
augmentation) and the ``detect`` task's target maps.

The boxes move with every geometric change, so the targets are encoded after augmentation, per image,
in numpy (``edge_cnn.tasks.detect.encode_targets``); ``tf.data.Dataset.from_generator`` feeds the
batches to Keras. Each pass over the data is one epoch whose order and augmentation come from
``(seed, epoch)``, so a resumed run sets ``epoch`` and continues the same sequence.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from edge_cnn.data.box_augment import BoxAugment, augment
from edge_cnn.data.boxes import BoxImage
from edge_cnn.preprocess import RESAMPLING, PreprocessSpec, to_pil
from edge_cnn.tasks.detect import encode_targets, letterbox


def class_indices(image: BoxImage, categories: Sequence[str]) -> np.ndarray:
    """The category index of each box of ``image``."""
    return np.array([list(categories).index(label) for label in image.labels], dtype=np.int64)


class BoxBatches:
    """Batches of (normalized inputs (B, H, W, C), targets (B, H/s, W/s, classes + 4)) over ``images``.

    ``training``: shuffled and (with ``augment``) augmented, drawn from ``(seed, epoch)`` with ``epoch``
    counting the passes; otherwise letterboxed, in order, every pass the same."""

    def __init__(self, images: Sequence[BoxImage], categories: Sequence[str], spec: PreprocessSpec,
                 map_size: tuple[int, int], stride: int, batch_size: int, *, training: bool = False,
                 augment: BoxAugment | None = None, seed: int = 0):
        self.images, self.categories, self.spec = list(images), list(categories), spec
        self.map_size, self.stride, self.batch_size = map_size, stride, int(batch_size)
        self.training, self.augment, self.seed = training, augment, int(seed)
        self.epoch = 0
        self.resample = RESAMPLING[spec.resize]

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def example(self, index: int, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """One image's (uint8 pixels, target map); augmented when ``rng`` is given."""
        image = self.images[index]
        pil = to_pil(image.path).convert("RGB" if self.spec.color == "rgb" else "L")
        classes = class_indices(image, self.categories)
        if rng is not None and self.augment is not None:
            pixels, boxes, kept = augment(pil, image.boxes, self.spec.height, self.spec.width, self.augment, rng,
                                          self.resample)
            classes = classes[kept]
        else:
            pixels, placed = letterbox(pil, self.spec.height, self.spec.width, self.spec.color, self.resample)
            boxes = placed.to_input(image.boxes)
        return pixels, encode_targets(boxes, classes, self.map_size, self.stride, len(self.categories))

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One pass: the next epoch's batches when training, else the same ordered pass."""
        rng = np.random.default_rng([self.seed, self.epoch]) if self.training else None
        if self.training:
            self.epoch += 1
        order = rng.permutation(len(self.images)) if rng is not None else np.arange(len(self.images))
        for start in range(0, len(order), self.batch_size):
            examples = [self.example(int(i), rng) for i in order[start : start + self.batch_size]]
            pixels = np.stack([pixels for pixels, _ in examples])
            yield self.spec.normalize(pixels), np.stack([target for _, target in examples])

    def dataset(self):
        """The passes as a ``tf.data.Dataset`` Keras can fit on (one iteration = one pass)."""
        from edge_cnn.keras import tf

        classes = len(self.categories)
        signature = (tf.TensorSpec((None, *self.spec.input_shape), tf.float32),
                     tf.TensorSpec((None, *self.map_size, classes + 4), tf.float32))
        dataset = tf.data.Dataset.from_generator(self.batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(len(self))).prefetch(2)
