"""tensorflow-datasets sources, by name (``cifar10``, ``cifar100``, ...)."""

from __future__ import annotations

import numpy as np

from tfprune.data.splits import DataError, ImageSplit


def load_tfds(
    name: str, *, train_split="train", test_split="test", data_dir=None, download=True, **_
) -> tuple[ImageSplit, ImageSplit]:
    """Loads a tensorflow-datasets image classification data set into memory.

    Args:
        name: A tfds name, e.g. ``"cifar10"``.
        train_split: tfds split for training (slicing like ``"train[:10%]"`` works).
        test_split: tfds split for testing.
        data_dir: tfds data folder (tfds' default if None).
        download: Let tfds download and prepare the data set when missing.

    Returns:
        ``(train, test)`` splits with tfds' class names.

    Raises:
        DataError: If tfds does not know the name, cannot download it, or the
            data set has no ``(image, label)`` supervised keys.
    """
    import tensorflow_datasets as tfds

    if name not in tfds.list_builders():
        raise DataError(
            f"{name!r} is neither an existing path nor a tensorflow-datasets name. "
            "Pass a path to an image folder, a .zip of one, or a CIFAR python archive."
        )
    try:
        splits, info = tfds.load(
            name, split=[train_split, test_split], as_supervised=True,
            data_dir=data_dir, download=download, with_info=True,
        )
    except Exception as error:  # noqa: BLE001  (tfds raises many kinds when offline)
        raise DataError(
            f"tensorflow-datasets could not load {name!r} ({type(error).__name__}: {error}). "
            "Offline? Point data.source at a local CIFAR archive, image folder or .zip instead."
        ) from None
    label_feature = info.features[info.supervised_keys[1]]
    class_names = list(getattr(label_feature, "names", [])) or [
        str(i) for i in range(label_feature.num_classes)
    ]
    return tuple(
        ImageSplit(*_to_arrays(dataset), class_names, f"tfds:{name}/{split}")
        for split, dataset in zip((train_split, test_split), splits, strict=True)
    )


def _to_arrays(dataset, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Materializes an (image, label) dataset as uint8 images and int64 labels."""
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(chunk).as_numpy_iterator():
        images.append(np.asarray(image_batch, dtype=np.uint8))
        labels.append(np.asarray(label_batch, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)
