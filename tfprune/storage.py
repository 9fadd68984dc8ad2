"""Arrays + description pairs on disk: ``NAME.npz`` (arrays) beside ``NAME.json`` (the rest).

Array keys are positional (``{prefix}_{i}``) with the real keys listed in the
JSON, so any string (layer names with ``/``) can be a key.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from tfprune.atomic import atomic_path, write_text


class StorageError(ValueError):
    """A saved file is missing pieces, truncated or corrupted (the message names it)."""


def stem(path: str | os.PathLike) -> Path:
    """``path`` without a ``.npz`` / ``.json`` suffix."""
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".npz", ".json") else base


def write_pair(path, tables: dict[str, dict], description: dict) -> Path:
    """Writes ``{prefix: {key: array}}`` tables and a JSON description; returns the .npz path.

    The description gains ``"keys"``: ``{prefix: [key, ...]}``. Each file is
    written atomically (``tfprune.atomic``), the arrays first: a reader never
    sees half a file, and a description always has its arrays beside it.
    """
    base = stem(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    arrays, keys = {}, {}
    for prefix, table in tables.items():
        keys[prefix] = list(table)
        arrays.update({f"{prefix}_{i}": np.asarray(v) for i, v in enumerate(table.values())})
    with atomic_path(base.with_suffix(".npz")) as temporary:
        np.savez(temporary, **arrays)
    write_text(base.with_suffix(".json"), json.dumps({**description, "keys": keys}, indent=1))
    return base.with_suffix(".npz")


def read_pair(path, what: str) -> tuple[dict[str, dict], dict]:
    """Reads what ``write_pair`` wrote: ``({prefix: {key: array}}, description)``.

    Never unpickles: object arrays are refused, so an untrusted file cannot run code.

    Raises:
        FileNotFoundError: Naming ``what`` (e.g. "scores") if either file is missing.
        StorageError: Naming the file, if either is truncated or corrupted.
    """
    base = stem(path)
    for suffix in (".npz", ".json"):
        if not base.with_suffix(suffix).is_file():
            raise FileNotFoundError(f"{base.with_suffix(suffix)}: no such {what} file.")
    description = _read_description(base.with_suffix(".json"), what)
    npz = base.with_suffix(".npz")
    try:
        with np.load(npz, allow_pickle=False) as arrays:
            return {prefix: {k: arrays[f"{prefix}_{i}"] for i, k in enumerate(names)}
                    for prefix, names in description.pop("keys").items()}, description
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise StorageError(f"{npz}: not a readable {what} file ({type(error).__name__}); it is "
                           f"truncated or corrupted: write it again.") from None


def _read_description(path: Path, what: str) -> dict:
    try:
        description = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StorageError(f"{path}: not a readable {what} description (invalid JSON at line "
                           f"{getattr(error, 'lineno', '?')}); it is truncated or corrupted: "
                           "write it again.") from None
    if not isinstance(description, dict) or not isinstance(description.get("keys"), dict):
        raise StorageError(f"{path}: not a {what} description (no 'keys'); write it again.")
    return description
