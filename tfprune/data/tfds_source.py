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
            name, split=[train_split, test_split], as_supervised=True, batch_size=-1,
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
    (train_images, train_labels), (test_images, test_labels) = tfds.as_numpy(splits)
    return (
        ImageSplit(train_images.astype(np.uint8), train_labels, class_names,
                   f"tfds:{name}/{train_split}"),
        ImageSplit(test_images.astype(np.uint8), test_labels, class_names,
                   f"tfds:{name}/{test_split}"),
    )
