"""Data: tfds names, CIFAR python archives and image folders/zips as ``tf.data`` pipelines.

Example:
    >>> from tfprune import data
    >>> bundle = data.load_data("cifar10", batch_size=128, train_per_class=500)
    >>> images, labels = data.class_balanced_memory(bundle, samples_per_class=10)

"""

from tfprune.data.bundle import DataBundle, DataSpec, load_data
from tfprune.data.sampling import balanced_indices, class_balanced_memory
from tfprune.data.sources import SOURCE_LOADERS, detect_kind, load_splits, register_source
from tfprune.data.splits import DataError, ImageSplit

__all__ = [
    "SOURCE_LOADERS", "DataBundle", "DataError", "DataSpec", "ImageSplit", "balanced_indices",
    "class_balanced_memory", "detect_kind", "load_data", "load_splits", "register_source",
]
