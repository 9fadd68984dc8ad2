"""The samples scoring reads: a gradient stream for g and a class-balanced memory for Hg.

``data`` may be a ``tf.data.Dataset`` of ``(images, labels)`` (batched or
not), a tuple ``(images, labels)`` of NumPy arrays, or a
``tfprune.data.DataBundle`` (its augmented training stream and a memory from
its training split). Labels are integer class ids, or one-hot rows.
Both draws are materialized once, so every measure scored from one context
sees the same samples.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from tfprune.data import DataBundle, DataError, class_balanced_memory
from tfprune.data.sampling import balanced_indices

#: Examples scanned for a class-balanced memory, as a multiple of its size, before giving up.
MEMORY_SCAN_FACTOR = 50


class SampleError(DataError):
    """The data cannot provide the samples a measure needs."""


def _as_class_ids(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.argmax(axis=1).astype(np.int64)
    return labels.reshape(-1).astype(np.int64)


def _batches_of(images: np.ndarray, labels: np.ndarray, batch_size: int):
    return [
        (images[start:start + batch_size], labels[start:start + batch_size])
        for start in range(0, len(labels), batch_size)
    ]


def _dataset_batches(dataset: tf.data.Dataset, input_rank: int, batch_size: int):
    """Yields ``(images, labels)`` NumPy batches of a dataset, batching it if needed."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) >= 2):
        raise SampleError(
            f"data: a dataset must yield (images, labels) pairs, got elements {spec}."
        )
    rank = spec[0].shape.rank
    if rank == input_rank - 1:
        dataset = dataset.batch(batch_size)
    elif rank != input_rank:
        raise SampleError(
            f"data: images of rank {rank} do not fit a model input of rank {input_rank} "
            "(batched) or its examples."
        )
    for element in dataset.as_numpy_iterator():
        yield element[0], _as_class_ids(element[1])


@functools.singledispatch
def gradient_batches(data, num_samples: int, *, input_rank: int, batch_size: int, seed: int):
    """Draws up to ``num_samples`` training samples as a list of ``(images, labels)`` batches.

    Args:
        data: A dataset, a tuple ``(images, labels)`` or a ``DataBundle``.
        num_samples: How many samples; fewer only if the data holds fewer.
        input_rank: The rank of the model's batched input.
        batch_size: The batch size for arrays and unbatched datasets.
        seed: Chooses the samples of arrays and of a bundle's augmented stream.

    Returns:
        A list of batches holding ``min(num_samples, available)`` samples.
    """
    _unsupported(data)


def _unsupported(data):
    raise SampleError(
        "data must be a tf.data.Dataset of (images, labels), a tuple (images, labels) of "
        f"NumPy arrays or a tfprune.data.DataBundle, got {type(data).__name__}."
    )


@gradient_batches.register(tuple)
def _(data, num_samples, *, input_rank, batch_size, seed):
    images, labels = _checked_arrays(data)
    order = np.random.default_rng(seed).permutation(len(labels))[:num_samples]
    return _batches_of(images[order], labels[order], batch_size)


@gradient_batches.register(tf.data.Dataset)
def _(data, num_samples, *, input_rank, batch_size, seed):
    return _take_samples(_dataset_batches(data, input_rank, batch_size), num_samples)


@gradient_batches.register(DataBundle)
def _(data, num_samples, *, input_rank, batch_size, seed):
    stream = data.train_dataset(start_epoch=seed, epochs=seed + 1).repeat()
    return _take_samples(_dataset_batches(stream, input_rank, batch_size), num_samples)


def _take_samples(batches, num_samples: int):
    taken, count = [], 0
    for images, labels in batches:
        keep = min(len(labels), num_samples - count)
        taken.append((images[:keep], labels[:keep]))
        count += keep
        if count >= num_samples:
            break
    return taken


def _checked_arrays(data: tuple):
    if len(data) != 2:
        raise SampleError(f"data: a tuple must be (images, labels), got {len(data)} items.")
    images, labels = np.asarray(data[0]), _as_class_ids(data[1])
    if len(images) != len(labels):
        raise SampleError(
            f"data: {len(images)} images but {len(labels)} labels; they must match."
        )
    if not len(labels):
        raise SampleError("data: no samples.")
    return images, labels


@functools.singledispatch
def class_memory(data, num_classes: int, per_class: int, *, input_rank: int, seed: int):
    """Draws ``per_class`` samples of every class, grouped by class (all of class 0 first).

    Args:
        data: A dataset, a tuple ``(images, labels)`` or a ``DataBundle``.
        num_classes: The number of classes (the model's output width).
        per_class: Samples per class.
        input_rank: The rank of the model's batched input.
        seed: Chooses the samples of arrays and bundles.

    Returns:
        ``(images, labels)`` NumPy arrays.

    Raises:
        SampleError: If some class has fewer than ``per_class`` samples.
    """
    _unsupported(data)


@class_memory.register(tuple)
def _(data, num_classes, per_class, *, input_rank, seed):
    images, labels = _checked_arrays(data)
    indices = balanced_indices(labels, per_class, num_classes, seed, where="data")
    return images[indices], labels[indices]


@class_memory.register(DataBundle)
def _(data, num_classes, per_class, *, input_rank, seed):
    if data.num_classes != num_classes:
        raise SampleError(
            f"data has {data.num_classes} classes but the model outputs {num_classes}."
        )
    return class_balanced_memory(data, per_class, seed)


@class_memory.register(tf.data.Dataset)
def _(data, num_classes, per_class, *, input_rank, seed):
    chosen = {label: [] for label in range(num_classes)}
    limit = MEMORY_SCAN_FACTOR * num_classes * per_class
    scanned = 0
    for images, labels in _dataset_batches(data, input_rank, 256):
        if scanned >= limit:
            break
        scanned += len(labels)
        for image, label in zip(images, labels, strict=True):
            if label in chosen and len(chosen[label]) < per_class:
                chosen[label].append(image)
        if all(len(found) == per_class for found in chosen.values()):
            break
    short = {label: len(found) for label, found in chosen.items() if len(found) < per_class}
    if short:
        raise SampleError(
            f"data: classes {sorted(short)} have fewer than {per_class} samples "
            f"(found {short}) in the first {scanned} examples; lower samples_per_class."
        )
    images = np.stack([image for label in range(num_classes) for image in chosen[label]])
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    return images, labels
