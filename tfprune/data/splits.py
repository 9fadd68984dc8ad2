"""In-memory image splits: the one form every data source is loaded into."""

from __future__ import annotations

import dataclasses

import numpy as np


class DataError(ValueError):
    """Bad data: a missing path, an empty class folder, mixed sizes, labels out of range."""


@dataclasses.dataclass
class ImageSplit:
    """One split of a labelled image data set held as NumPy arrays.

    Attributes:
        images: uint8 array of shape (N, height, width, channels).
        labels: int64 array of shape (N,).
        class_names: Names of the classes, in label order.
        origin: Where the split came from, for error messages (a path or tfds name).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    origin: str = ""

    def __post_init__(self):
        self.images = np.asarray(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.validate()

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def validate(self) -> None:
        """Checks shapes, dtype and label range.

        Raises:
            DataError: Naming the split's origin and the offending index.
        """
        where = self.origin or "data split"
        if self.images.ndim != 4:
            raise DataError(
                f"{where}: images must have shape (N, height, width, channels), "
                f"got {self.images.shape}."
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise DataError(
                f"{where}: {self.images.shape[0]} images but {self.labels.shape[0]} labels."
            )
        if len(self) == 0:
            raise DataError(f"{where}: the split holds no images.")
        if self.images.dtype != np.uint8:
            raise DataError(f"{where}: images must be uint8, got {self.images.dtype}.")
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if bad.size:
            index = int(bad[0])
            raise DataError(
                f"{where}: label {int(self.labels[index])} at index {index} is outside the "
                f"class range 0..{self.num_classes - 1} ({bad.size} such labels)."
            )

    def subset(self, indices: np.ndarray) -> ImageSplit:
        """Returns the split restricted to ``indices`` (same classes)."""
        return ImageSplit(self.images[indices], self.labels[indices], self.class_names, self.origin)
