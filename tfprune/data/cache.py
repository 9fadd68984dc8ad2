"""Where tfprune keeps the decoded arrays of zipped data (outside the repository)."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

#: Environment variable that overrides the cache folder.
CACHE_ENV = "TFPRUNE_CACHE_DIR"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Returns ``cache_dir``, else ``$TFPRUNE_CACHE_DIR``, else ~/.cache/tfprune."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "tfprune"


def zip_fingerprint(path: Path) -> str:
    """A digest of a zip's contents, read from its central directory (no member is read).

    Every member's name, size and CRC-32 enter it, so a copy of the archive, or the
    same archive mounted again with a new modification time, has the same
    fingerprint, and any change to a member's bytes changes it.

    Raises:
        zipfile.BadZipFile: If ``path`` is not a readable zip.
    """
    digest = hashlib.sha1()
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            digest.update(f"{member.filename}\0{member.file_size}\0{member.CRC}\n".encode())
    return digest.hexdigest()[:12]


def cache_folder_for(path: Path, cache_dir=None) -> Path:
    """Returns the cache subfolder of the zip ``path``, named by its contents.

    The name is ``<file name>-<fingerprint>`` (``zip_fingerprint``): a zip moved,
    copied or touched reuses its decoded arrays, and a changed one gets a new folder.

    Raises:
        zipfile.BadZipFile: If ``path`` is not a readable zip.
    """
    return cache_root(cache_dir) / f"{path.name}-{zip_fingerprint(path)}"
