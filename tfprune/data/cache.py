"""Where tfprune keeps extracted archives and decoded arrays (outside the repository)."""

from __future__ import annotations

import hashlib
import os
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


def cache_folder_for(path: Path, cache_dir=None) -> Path:
    """Returns a cache subfolder unique to ``path``'s location, size and modification time."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()
    digest = hashlib.sha1(key).hexdigest()[:12]
    return cache_root(cache_dir) / f"{path.name}-{digest}"
