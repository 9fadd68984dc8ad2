"""A study's finished runs as one JSON file of ``RunRecord``s, kept instead of run folders.

Tables are built from ``RunRecord``s alone, so a finished run can be kept as its
record: a few hundred bytes, where its folder holds checkpoints and
TensorBoard logs that stay out of git. ``tfprune report RUNS... --save-records
FILE`` merges the records it read into FILE (a run read again replaces its old
record, records of runs no longer on disk are kept), and ``tfprune report
FILE`` builds the tables from it. The file is plain JSON, never executed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from tfprune.study.report import RunRecord

_FIELDS = {field.name for field in dataclasses.fields(RunRecord)}
_REQUIRED = {field.name for field in dataclasses.fields(RunRecord)
             if field.default is dataclasses.MISSING}


def is_records_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a records file (``*.json``) rather than run folders."""
    return Path(path).suffix == ".json"


def load_records(path: str | os.PathLike) -> list[RunRecord]:
    """The records saved in ``path``.

    Raises:
        FileNotFoundError: Without the file.
        ValueError: For a file that is not a list of records, naming it and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such records file.")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); restore it from git.") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of run records, got {type(entries).__name__}.")
    records = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _REQUIRED <= set(entry) <= _FIELDS:
            fields = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            raise ValueError(f"{path}: entry {index} is not a run record (fields {fields}; "
                             f"needs {sorted(_REQUIRED)}).")
        records.append(RunRecord(**{**entry, "run_dir": Path(entry["run_dir"])}))
    return records


def save_records(records: list[RunRecord], path: str | os.PathLike) -> Path:
    """Merges ``records`` into the file at ``path`` (by run name, the newer one kept)."""
    path = Path(path)
    merged = {record.run_dir.name: record
              for record in (load_records(path) if path.is_file() else [])}
    merged.update({record.run_dir.name: record for record in records})
    entries = [{**dataclasses.asdict(record), "run_dir": str(record.run_dir)}
               for _, record in sorted(merged.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1) + "\n")
    return path
