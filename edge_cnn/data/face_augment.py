"""Camera pixel augmentation called by ``augment.pixel_augmenter``: random grey and random blur.

Written for faces, used by every folder task: unconstrained face photos come from grey cameras and
out-of-focus or low-resolution crops, and an embedding that changes with colour or sharpness would
call the same person two people (a window classifier meets the same cameras). Both act on
whole batches of 0..255 pixels (a fresh draw per image), after the geometric and photometric
options and before ``PreprocessSpec.normalize``, like the rest of the augmentation. There is no
vertical flip anywhere: an upside-down face is no face the model will see.
"""

from __future__ import annotations

BLUR_SIGMAS = (0.5, 1.5)  # Gaussian blur radius range, in pixels (a 5x5 kernel holds 1.5 sigma well enough)
BLUR_TAPS = 5


def face_pixel_ops(grey: float, blur: float, seed: int):
    """A function (NHWC 0..255 float batch) -> batch: each image turned grey with probability ``grey``
    (luma in every channel) and blurred with probability ``blur``; None when both are 0."""
    if not grey and not blur:
        return None
    from edge_cnn.keras import tf

    generator = tf.random.Generator.from_seed(seed + 11)

    def apply(pixels):
        pixels = tf.cast(pixels, tf.float32)
        count = tf.shape(pixels)[0]
        if grey and pixels.shape[-1] == 3:
            luma = tf.reduce_sum(pixels * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
            chosen = generator.uniform([count, 1, 1, 1]) < grey
            pixels = tf.where(chosen, tf.broadcast_to(luma, tf.shape(pixels)), pixels)
        if blur:
            sigma = generator.uniform([], *BLUR_SIGMAS)
            taps = tf.range(BLUR_TAPS, dtype=tf.float32) - (BLUR_TAPS - 1) / 2
            line = tf.exp(-0.5 * tf.square(taps / sigma))
            line = line / tf.reduce_sum(line)
            kernel = line[:, None] * line[None, :]
            channels = pixels.shape[-1]
            kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
            padded = tf.pad(pixels, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
            blurred = tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")
            chosen = generator.uniform([count, 1, 1, 1]) < blur
            pixels = tf.where(chosen, blurred, pixels)
        return tf.clip_by_value(pixels, 0.0, 255.0)

    return apply
