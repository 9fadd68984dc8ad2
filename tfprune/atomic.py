"""Atomic file writes: a file is either its old self or its complete new self, never half.

Every file tfprune writes for a user (plans, scores, records, summaries, configs,
metrics, checkpoints, slimmed and exported models) goes through ``atomic_path``:
the content is written to a uniquely named temporary file in the same folder,
flushed to disk (``fsync``), then renamed over the target (``os.replace``, atomic
on POSIX and Windows), and the folder is synced so the rename survives a crash.
If writing fails (a full disk, a kill), the target is untouched and the
temporary file is removed (a kill -9 may leave one behind: its name starts with
the target's and ends in ``.tmp-<random><suffix>``, never the target's own name).
Two processes writing the same target never share a temporary name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: The infix of temporary files (``NAME.tmp-XXXXXXXX.SUFFIX``).
TEMPORARY_INFIX = ".tmp-"


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:  # a platform that cannot open folders (Windows): nothing to sync
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _suffix(path: Path) -> str:
    """The ending a writer recognises ``path`` by (``.weights.h5`` for Keras weights)."""
    return ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file left by an interrupted ``atomic_path``."""
    return TEMPORARY_INFIX in Path(path).name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path`` atomically.

    The temporary path keeps ``path``'s suffix (Keras and NumPy choose formats by
    it; ``.weights.h5`` as a whole). Whatever the block raises, ``path`` keeps
    its old content and the temporary file is removed.

    Args:
        path: The file to write. Its folder is created if missing.

    Yields:
        The temporary path (not yet existing) to write the new content to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}{TEMPORARY_INFIX}",
                                        suffix=_suffix(path))
    os.close(descriptor)
    temporary = Path(name)
    temporary.unlink()  # writers (Keras, NumPy) create it themselves
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"{temporary}: nothing was written for {path}.")
        _fsync_path(temporary)
        os.replace(temporary, path)
        _fsync_path(path.parent, directory=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a new temporary folder to fill; on success it replaces the folder ``path``.

    For outputs that are whole folders (TensorBoard HParams logs): a reader sees
    the old folder or the complete new one, and a rewrite never leaves the old
    files mixed with the new. Of two processes replacing one folder at once,
    one wins and the other's folder is discarded. Whatever the block raises,
    ``path`` is untouched and the temporary folder removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{path.name}{TEMPORARY_INFIX}"))
    try:
        yield temporary
        old = path.with_name(f"{temporary.name}.old")
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, old)
        try:
            os.replace(temporary, path)
        except OSError:  # another writer put its folder there first: keep theirs
            pass
        shutil.rmtree(old, ignore_errors=True)
        _fsync_path(path.parent, directory=True)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def ensure_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Raises ``OSError(ENOSPC)`` if ``folder``'s disk has less than ``needed`` bytes free.

    For writers that cannot fail cleanly on a full disk (h5py may crash the
    process), checked before they start.
    """
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"no space left on device for {what} (needs about "
                                    f"{needed / 2**20:,.1f} MiB, {free / 2**20:,.1f} MiB free)",
                      str(folder))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value, indent: int | None = 1) -> Path:
    """Writes ``value`` as JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(value, indent=indent) + "\n")
