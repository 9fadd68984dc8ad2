"""Output files of commands: never overwrite a file tfprune did not write, unless forced.

A command that writes files into a folder the user names (``report --output``,
``analyze runs --output``, ``sensitivity --output``, ``export --output-dir``)
keeps a manifest there, ``.tfprune-outputs.json``, listing the files it wrote.
Running it again replaces those files (each atomically) and nothing else. A
file that exists but is not in the manifest is the user's: the command stops
before writing anything, naming it, unless ``--force`` is given. A command
writing one file (``slim --output``, ``score --output``, ``bench --json``)
refuses an existing file the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tfprune.atomic import write_json
from tfprune.config import ConfigError


class OutputExistsError(ConfigError):
    """A command would overwrite a file that tfprune did not write."""


def refuse_overwrite(path: str | os.PathLike, force: bool = False) -> Path:
    """Returns ``path`` if it may be written; raises if it exists and ``force`` is off."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(
            f"{path}: already exists, and tfprune never overwrites a file it did not write. "
            "Choose another path, or pass --force to replace it.")
    return path


class OutputFolder:
    """A folder a command writes its files into, with the manifest of what it wrote.

    Args:
        path: The folder (created on ``record``).
        force: Replace files tfprune did not write.

    Example:
        >>> folder = OutputFolder("reports")
        >>> folder.check(["report.md", "report.csv"])   # before any work
        >>> ...                                          # write them
        >>> folder.record(["report.md", "report.csv"])
    """

    MANIFEST = ".tfprune-outputs.json"

    def __init__(self, path: str | os.PathLike, force: bool = False):
        self.path = Path(path)
        self.force = force

    @property
    def manifest(self) -> Path:
        """The manifest file."""
        return self.path / self.MANIFEST

    def written(self) -> set[str]:
        """Names (relative to the folder) that tfprune wrote here before."""
        if not self.manifest.is_file():
            return set()
        try:
            names = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return set()  # an unreadable manifest vouches for nothing
        return {str(name) for name in names} if isinstance(names, list) else set()

    def check(self, names) -> None:
        """Raises ``OutputExistsError`` naming the files in ``names`` that are the user's."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputExistsError(f"{self.path}: a file, not a folder; choose another output.")
        if self.force:
            return
        ours = self.written()
        theirs = [str(name) for name in names
                  if (self.path / name).exists() and str(name) not in ours]
        if theirs:
            raise OutputExistsError(
                f"{self.path}: {', '.join(theirs)} already exist(s), and tfprune never "
                "overwrites files it did not write. Choose another output folder, or pass "
                "--force to replace them.")

    def record(self, names) -> None:
        """Adds ``names`` to the manifest (atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.manifest, sorted(self.written() | {str(name) for name in names}))
