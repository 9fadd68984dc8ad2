"""Arrays + description pairs on disk: ``NAME.npz`` (arrays) beside ``NAME.json`` (the rest).

Array keys are positional (``{prefix}_{i}``) with the real keys listed in the
JSON, so any string (layer names with ``/``) can be a key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def stem(path: str | os.PathLike) -> Path:
    """``path`` without a ``.npz`` / ``.json`` suffix."""
    base = Path(path)
    return base.with_suffix("") if base.suffix in (".npz", ".json") else base


def write_pair(path, tables: dict[str, dict], description: dict) -> Path:
    """Writes ``{prefix: {key: array}}`` tables and a JSON description; returns the .npz path.

    The description gains ``"keys"``: ``{prefix: [key, ...]}``.
    """
    base = stem(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    arrays, keys = {}, {}
    for prefix, table in tables.items():
        keys[prefix] = list(table)
        arrays.update({f"{prefix}_{i}": np.asarray(v) for i, v in enumerate(table.values())})
    np.savez(base.with_suffix(".npz"), **arrays)
    base.with_suffix(".json").write_text(json.dumps({**description, "keys": keys}, indent=1))
    return base.with_suffix(".npz")


def read_pair(path, what: str) -> tuple[dict[str, dict], dict]:
    """Reads what ``write_pair`` wrote: ``({prefix: {key: array}}, description)``.

    Raises:
        FileNotFoundError: Naming ``what`` (e.g. "scores") if either file is missing.
    """
    base = stem(path)
    for suffix in (".npz", ".json"):
        if not base.with_suffix(suffix).is_file():
            raise FileNotFoundError(f"{base.with_suffix(suffix)}: no such {what} file.")
    description = json.loads(base.with_suffix(".json").read_text())
    with np.load(base.with_suffix(".npz")) as arrays:
        tables = {prefix: {k: arrays[f"{prefix}_{i}"] for i, k in enumerate(names)}
                  for prefix, names in description.pop("keys").items()}
    return tables, description
