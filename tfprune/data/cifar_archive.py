"""The original CIFAR-10/100 python archives (``cifar-10-python.tar.gz``), packed or extracted."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from tfprune.data.splits import DataError, ImageSplit

#: Per variant: training batch files, test batch file, meta file, label key, names key.
_LAYOUTS = {
    "cifar10": (
        [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta",
        b"labels", b"label_names",
    ),
    "cifar100": (["train"], "test", "meta", b"fine_labels", b"fine_label_names"),
}


#: The only globals a CIFAR python batch refers to: NumPy's array reconstruction, and
#: ``_codecs.encode``, which protocol-2 pickles written by Python 3 use for bytes.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data and NumPy arrays only: an archive cannot run code."""

    def find_class(self, module: str, name: str):
        """Allows only ``_ALLOWED_GLOBALS``; anything else is refused before it loads."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which CIFAR batches "
                                         "never do (refused: unpickling it could run code)")
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        return _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # noqa: BLE001  (any unpickling failure is bad data)
        raise DataError(f"{where}: not a CIFAR python batch ({error}).") from None


def _read_members(path: Path) -> dict[str, bytes]:
    """Returns {basename: bytes} of the files in a tar archive or an extracted folder."""
    if path.is_dir():
        return {f.name: f.read_bytes() for f in path.rglob("*") if f.is_file()}
    try:
        with tarfile.open(path) as archive:
            return {
                Path(m.name).name: archive.extractfile(m).read()
                for m in archive.getmembers() if m.isfile()
            }
    except tarfile.TarError as error:
        raise DataError(f"{path}: not a readable tar archive ({error}).") from None


def _detect_variant(members: dict[str, bytes], path: Path) -> str:
    for variant, (train_files, test_file, meta_file, _, _) in _LAYOUTS.items():
        if all(name in members for name in [*train_files, test_file, meta_file]):
            return variant
    raise DataError(
        f"{path}: not a CIFAR-10/100 python archive (expected data_batch_1..5, test_batch and "
        "batches.meta, or train, test and meta)."
    )


def _batches_to_split(batches: list[dict], label_key, class_names, where) -> ImageSplit:
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: expected rows of 3072 pixels, got shape {data.shape}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return ImageSplit(images, labels, class_names, origin=where)


def load_cifar_archive(path: str | os.PathLike, **_) -> tuple[ImageSplit, ImageSplit]:
    """Loads CIFAR-10 or CIFAR-100 from its python archive or the extracted folder.

    Args:
        path: ``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz`` or the
            folder they extract to (``cifar-10-batches-py`` / ``cifar-100-python``).

    Returns:
        ``(train, test)`` splits (CIFAR-100 with its 100 fine labels).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    members = _read_members(path)
    variant = _detect_variant(members, path)
    train_files, test_file, meta_file, label_key, names_key = _LAYOUTS[variant]
    meta = _unpickle(members[meta_file], f"{path}:{meta_file}")
    class_names = [name.decode() for name in meta[names_key]]
    train_batches = [_unpickle(members[name], f"{path}:{name}") for name in train_files]
    train = _batches_to_split(train_batches, label_key, class_names, f"{path} (train)")
    test_batch = _unpickle(members[test_file], f"{path}:{test_file}")
    test = _batches_to_split([test_batch], label_key, class_names, f"{path} (test)")
    return train, test


def looks_like_cifar_archive(path: Path) -> bool:
    """True for a CIFAR python tarball or a folder holding its batch files."""
    if path.is_dir():
        return (path / "batches.meta").exists() or (path / "meta").exists()
    return path.name.endswith((".tar.gz", ".tgz", ".tar"))
