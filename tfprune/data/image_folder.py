"""Image-folder sources: ``root/{train,test}/<class>/*`` on disk or in a .zip.

A .zip is read in place (``zipfile.Path``: nothing is extracted); its decoded
arrays are cached once per archive contents.
"""

from __future__ import annotations

import errno
import os
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from tfprune.atomic import atomic_path
from tfprune.data.cache import cache_folder_for
from tfprune.data.splits import DataError, ImageSplit

#: File endings read as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
#: Decoding more images than this shows a progress bar.
PROGRESS_THRESHOLD = 2000
#: Environment variables overriding the limits below.
MAX_EXTRACT_ENV = "TFPRUNE_MAX_EXTRACT_BYTES"
MAX_PIXELS_ENV = "TFPRUNE_MAX_IMAGE_PIXELS"
#: Default limit on the bytes a zip's members may declare (a zip bomb is refused past it).
MAX_EXTRACT_BYTES = 20 * 2**30
#: Past this many times its compressed size (and 64 MiB), a zip is taken for a bomb.
MAX_COMPRESSION_RATIO = 200
#: Default limit on one image's pixels, checked from its header before decoding.
MAX_IMAGE_PIXELS = 25_000_000


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise DataError(f"${name}={value!r}: not a whole number.") from None


def find_split_root(folder, train_split: str, test_split: str):
    """Returns the folder that holds ``train/`` and ``test/``: ``folder`` or its only child.

    ``folder`` is a ``pathlib.Path`` or a ``zipfile.Path`` (a zip read in place).

    Raises:
        DataError: If neither ``folder`` nor a single subfolder holds both splits.
    """
    def has_splits(candidate: Path) -> bool:
        return (candidate / train_split).is_dir() and (candidate / test_split).is_dir()

    if has_splits(folder):
        return folder
    children = [child for child in folder.iterdir() if child.is_dir()]
    if len(children) == 1 and has_splits(children[0]):
        return children[0]
    raise DataError(
        f"{folder}: expected an image folder with '{train_split}/<class>/*' and "
        f"'{test_split}/<class>/*' (directly or inside one top-level folder)."
    )


def list_class_files(split_dir) -> tuple[list[str], list[list]]:
    """Lists class folders (sorted by name) and their image files (sorted by name).

    Raises:
        DataError: If there are no class folders or a class folder holds no image.
    """
    class_dirs = sorted((child for child in split_dir.iterdir() if child.is_dir()),
                        key=lambda child: child.name)
    if not class_dirs:
        raise DataError(f"{split_dir}: no class folders found (expected {split_dir}/<class>/*).")
    files = []
    for class_dir in class_dirs:
        images = sorted((f for f in class_dir.iterdir()
                         if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                        key=lambda f: f.name)
        if not images:
            raise DataError(
                f"{class_dir}: empty class folder (no {', '.join(IMAGE_SUFFIXES)} files)."
            )
        files.append(images)
    return [d.name for d in class_dirs], files


def decode_images(paths: list) -> np.ndarray:
    """Decodes images to one uint8 RGB array; all must share one size.

    Each path is a ``pathlib.Path`` or a ``zipfile.Path`` (read from the archive).

    Raises:
        DataError: Naming the first file whose size differs from the first image's, or
            a file that cannot be decoded.
    """
    arrays, expected = [], None
    progress = None
    if len(paths) > PROGRESS_THRESHOLD:
        print(f"decoding {len(paths)} images under {paths[0].parent.parent}")
        progress = keras.utils.Progbar(len(paths), unit_name="image")
    max_pixels = _limit(MAX_PIXELS_ENV, MAX_IMAGE_PIXELS)
    for count, path in enumerate(paths, start=1):
        try:
            with path.open("rb") as handle, Image.open(handle) as image:  # the header first
                width, height = image.size
                if width * height > max_pixels:
                    raise DataError(
                        f"{path}: image of {width}x{height} pixels, more than the limit of "
                        f"{max_pixels:,} (${MAX_PIXELS_ENV}); not decoded. Resize the images, "
                        f"or raise ${MAX_PIXELS_ENV} if this is intended.")
                if expected is not None and (height, width) != expected[0][:2]:
                    raise DataError(
                        f"{path}: image of size {width}x{height} differs from {expected[1]} "
                        f"({expected[0][1]}x{expected[0][0]}); images of mixed sizes are not "
                        "supported: resize them to one size first.")
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, Image.DecompressionBombError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: cannot decode image ({error}).") from None
        if expected is None:
            expected = (array.shape, path)
        elif array.shape != expected[0]:
            raise DataError(
                f"{path}: image of size {array.shape[1]}x{array.shape[0]} differs from "
                f"{expected[1]} ({expected[0][1]}x{expected[0][0]}); images of mixed sizes "
                "are not supported: resize them to one size first."
            )
        arrays.append(array)
        if progress is not None and (count % 500 == 0 or count == len(paths)):
            progress.update(count)
    return np.stack(arrays)


def load_split_folder(split_dir, class_names: list[str] | None = None) -> ImageSplit:
    """Loads one split folder ``split_dir/<class>/*``.

    Args:
        split_dir: The split's folder.
        class_names: If given (the training split's classes), the folder must have the same.
    """
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: split folder not found.")
    names, files = list_class_files(split_dir)
    if class_names is not None and names != class_names:
        raise DataError(
            f"{split_dir}: class folders {names} differ from the training split's {class_names}."
        )
    paths = [path for class_files in files for path in class_files]
    labels = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, f in enumerate(files)])
    return ImageSplit(decode_images(paths), labels, names, origin=str(split_dir))


def _check_zip_size(zip_path: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuses a zip whose declared contents exceed the limits (a zip bomb), before decoding.

    Reading a member never yields more bytes than it declares (``zipfile``
    stops there, and a wrong CRC fails), so the declared sizes bound what
    decoding reads.
    """
    declared = sum(member.file_size for member in members)
    limit = _limit(MAX_EXTRACT_ENV, MAX_EXTRACT_BYTES)
    compressed = max(1, zip_path.stat().st_size)
    if declared > limit or (declared > 64 * 2**20
                            and declared > MAX_COMPRESSION_RATIO * compressed):
        raise DataError(
            f"{zip_path}: would extract to {declared / 2**20:,.0f} MiB from "
            f"{compressed / 2**20:,.1f} MiB (limit {limit / 2**20:,.0f} MiB, or "
            f"{MAX_COMPRESSION_RATIO}x its size): refused as a possible zip bomb. If the "
            f"archive is trusted, raise ${MAX_EXTRACT_ENV} (bytes) or extract it yourself and "
            "give the folder.")


def _decoded_path(cache: Path, split: str) -> Path:
    """Where a zip's split is kept decoded."""
    return cache / f"decoded-{split}.npz"


def _cached_split(split_dir, cache: Path, name: str, class_names=None) -> ImageSplit:
    """Loads a split of a zip, decoding it once into ``cache/decoded-<name>.npz``.

    A full disk leaves the split loaded and uncached (the next load decodes again),
    with a warning, and no partial file. A cached file that cannot be read
    (truncated, or not tfprune's) is decoded again and replaced, with a warning;
    it is read without pickles, so it never executes anything.
    """
    arrays_path = _decoded_path(cache, name)
    if arrays_path.exists():
        try:
            with np.load(arrays_path) as stored:
                return ImageSplit(stored["images"], stored["labels"],
                                  list(stored["class_names"]), str(split_dir))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, DataError) as error:
            warnings.warn(f"{arrays_path}: not a readable cache of decoded images ({error}); "
                          "decoding the zip again and replacing it.", stacklevel=2)
    split = load_split_folder(split_dir, class_names)
    try:
        with atomic_path(arrays_path) as temporary:  # removed on a full disk
            np.savez(temporary, images=split.images, labels=split.labels,
                     class_names=np.array(split.class_names))
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        warnings.warn(f"{arrays_path}: no space left on the device for the decoded images "
                      f"({split.images.nbytes / 2**20:,.0f} MiB); they are not cached, so the "
                      "next load decodes the zip again. Free space there, or point "
                      "$TFPRUNE_CACHE_DIR at a larger disk.", stacklevel=2)
    return split


def _load_zip(path: Path, train_split: str, test_split: str, cache_dir):
    """``(train, test)`` of a zipped image folder: decoded from the archive once, then cached."""
    try:
        cache = cache_folder_for(path, cache_dir)
        with zipfile.ZipFile(path) as archive:
            if not all(_decoded_path(cache, name).exists() for name in (train_split, test_split)):
                _check_zip_size(path, archive.infolist())
                print(f"decoding {path} once (later loads read {cache})")
            root = find_split_root(zipfile.Path(archive), train_split, test_split)
            train = _cached_split(root / train_split, cache, train_split)
            test = _cached_split(root / test_split, cache, test_split, train.class_names)
    except zipfile.BadZipFile as error:
        raise DataError(f"{path}: not a readable zip file ({error}).") from None
    return train, test


def load_image_folder(
    path: str | os.PathLike, *, train_split="train", test_split="test", cache_dir=None, **_
) -> tuple[ImageSplit, ImageSplit]:
    """Loads ``root/train/<class>/*`` and ``root/test/<class>/*`` from a folder or a .zip.

    A .zip is read in place (nothing is extracted) and its decoded arrays are
    kept in the cache folder, named by the archive's contents, so later loads
    take seconds. Its declared size is checked first (a zip bomb is refused).

    Args:
        path: The image folder, or a .zip holding one.
        train_split: Name of the training split's folder.
        test_split: Name of the test split's folder.
        cache_dir: Cache folder for zips' decoded arrays (default ``$TFPRUNE_CACHE_DIR`` or
            ~/.cache/tfprune).

    Returns:
        ``(train, test)`` splits; class labels follow the sorted class-folder names.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    if path.suffix.lower() == ".zip":
        return _load_zip(path, train_split, test_split, cache_dir)
    root = find_split_root(path, train_split, test_split)
    train = load_split_folder(root / train_split)
    return train, load_split_folder(root / test_split, train.class_names)
