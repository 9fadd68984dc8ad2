"""Registry of data sources and the rule that picks one for a ``source`` string."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tfprune.data.cifar_archive import load_cifar_archive, looks_like_cifar_archive
from tfprune.data.image_folder import load_image_folder
from tfprune.data.splits import DataError
from tfprune.data.tfds_source import load_tfds

#: kind -> loader(source, **options) -> (train ImageSplit, test ImageSplit)
SOURCE_LOADERS: dict[str, Callable] = {
    "tfds": load_tfds,
    "cifar_archive": load_cifar_archive,
    "image_folder": load_image_folder,
}


def register_source(kind: str, loader: Callable) -> None:
    """Registers ``loader(source, **options) -> (train, test)`` under ``kind``."""
    SOURCE_LOADERS[kind] = loader


def _looks_like_path(source: str) -> bool:
    return "/" in source or "\\" in source or source.startswith(("~", ".")) or "." in source


def detect_kind(source: str) -> str:
    """Picks the source kind: a CIFAR archive, an image folder/zip, else a tfds name.

    Raises:
        DataError: If ``source`` looks like a path that does not exist.
    """
    path = Path(source).expanduser()
    if path.exists():
        if looks_like_cifar_archive(path):
            return "cifar_archive"
        if path.is_dir() or path.suffix.lower() == ".zip":
            return "image_folder"
        raise DataError(
            f"data source {source!r}: a file tfprune cannot read as data. Give an image folder "
            "(one subfolder per class, under train/ and test/), a .zip of one, a CIFAR python "
            "archive (cifar-10-python.tar.gz or its extracted folder) or a tfds name.")
    if _looks_like_path(source):
        raise DataError(f"data source {source!r}: no such file or folder.")
    return "tfds"


def load_splits(source: str, kind: str = "auto", **options):
    """Loads ``(train, test)`` ImageSplits from ``source`` with the loader of ``kind``.

    Raises:
        DataError: For an unknown kind (listing the valid ones) or bad data.
    """
    if kind == "auto":
        kind = detect_kind(source)
    if kind not in SOURCE_LOADERS:
        raise DataError(
            f"Unknown data kind {kind!r}. Valid: auto, {', '.join(sorted(SOURCE_LOADERS))}."
        )
    return SOURCE_LOADERS[kind](source, **options)
