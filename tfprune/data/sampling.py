"""Class-balanced subsets and sample memories."""

from __future__ import annotations

import numpy as np

from tfprune.data.splits import DataError


def balanced_indices(
    labels: np.ndarray, per_class: int, num_classes: int, seed: int = 0, where: str = "labels"
) -> np.ndarray:
    """Draws ``per_class`` indices of every class without replacement.

    Args:
        labels: Integer labels, shape (N,).
        per_class: How many examples to draw from each class (> 0).
        num_classes: The number of classes; every class must have enough examples.
        seed: Seed of the draw; the same seed gives the same indices.
        where: Names the labels' origin in error messages.

    Returns:
        int64 indices grouped by class (all of class 0 first), each group sorted.

    Raises:
        DataError: If ``per_class`` < 1 or a class has fewer than ``per_class`` examples.
    """
    if per_class < 1:
        raise DataError(f"{where}: per_class must be >= 1, got {per_class}.")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        candidates = np.flatnonzero(labels == label)
        if candidates.size < per_class:
            raise DataError(
                f"{where}: class {label} has {candidates.size} examples, "
                f"fewer than the {per_class} per class requested."
            )
        chosen.append(np.sort(rng.choice(candidates, size=per_class, replace=False)))
    return np.concatenate(chosen).astype(np.int64)


def class_balanced_memory(data, samples_per_class: int = 10, seed: int = 0):
    """Draws a class-balanced memory of training samples, as GraSP's Hg estimate needs.

    Args:
        data: A ``tfprune.data.DataBundle``.
        samples_per_class: ``k``, the samples drawn from each class.
        seed: Seed of the draw.

    Returns:
        A tuple ``(images, labels)`` of NumPy arrays: float32 images normalized
        as the test pipeline does (no augmentation), grouped by class, and int64 labels.
    """
    split = data.train_split
    indices = balanced_indices(
        split.labels, samples_per_class, split.num_classes, seed, where=split.origin
    )
    images = data.normalize_numpy(split.images[indices])
    return images, split.labels[indices]
