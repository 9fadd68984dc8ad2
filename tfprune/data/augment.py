"""The paper's CIFAR augmentation (pad 4, random crop, horizontal flip), stateless and seeded."""

from __future__ import annotations

import tensorflow as tf


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Zero-pads by ``padding`` pixels, crops back to the original size, flips at random.

    Identical to torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``
    on the raw image. Stateless: the same ``seed`` gives the same result, so a
    resumed run sees exactly the images an uninterrupted one would.

    Args:
        image: float32 image (height, width, channels), not yet normalized.
        seed: int32/int64 tensor of shape (2,).
        padding: Pixels of zero padding on each side.

    Returns:
        The augmented image, same shape as ``image``.
    """
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    )
    cropped = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)
