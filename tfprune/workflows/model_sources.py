"""What ``tfprune export`` and ``tfprune bench`` read: run folders or .keras files.

A prune run folder holds the masked model (``model.keras``) and its plans; its
slimmed model is ``slim.keras``, made on first use. A run folder also names
the data it was trained on, which export calibrates and verifies with.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import keras

from tfprune.atomic import atomic_path
from tfprune.config import ConfigError
from tfprune.model_files import load_model_file
from tfprune.outputs import refuse_overwrite
from tfprune.run_folder import RunFolder


@dataclasses.dataclass
class ModelSource:
    """A model to export or time, and where it came from.

    Attributes:
        label: A short name for tables.
        path: The .keras file.
        run_dir: The run folder, or None for a bare .keras file.
    """

    label: str
    path: Path
    run_dir: Path | None = None

    def load(self) -> keras.Model:
        """Loads the model (without its optimizer state)."""
        return load_model_file(self.path, what=f"model {self.label!r}")


def _run_model_path(run_dir: Path) -> Path:
    path = RunFolder(run_dir).model
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {path.name}; is it a finished tfprune run?")
    return path


def slim_run(run_dir: str | os.PathLike, output: str | os.PathLike | None = None,
             force: bool = False):
    """Slims a prune run's model with its last plan and saves it (atomically).

    Args:
        run_dir: A finished ``tfprune prune`` run folder.
        output: Where to save, a ``.keras`` file (default ``RUN_DIR/slim.keras``, which a
            later slim replaces); an existing file elsewhere is refused unless ``force``.
        force: Replace an existing ``output``.

    Returns:
        ``(masked_model, slimmed_model, saved_path)``.

    Raises:
        ConfigError: If the folder has no model.keras or no plan.
    """
    from tfprune.pruning import latest_plan
    from tfprune.slimming import slim

    run_dir = Path(run_dir)
    if output is not None:
        if Path(output).suffix != ".keras":
            raise ConfigError(f"--output {output}: a slimmed model is saved as a .keras file; "
                              "give a path ending in .keras.")
        refuse_overwrite(output, force)
    _run_model_path(run_dir)  # a clear error for a folder without a final model
    run = RunFolder(run_dir)
    plan = latest_plan(run.plans, 10**9)
    if plan is None:
        raise ConfigError(f"{run_dir}: no plans/epoch_*.npz; nothing was pruned in this run.")
    model = run.load_model(compile=False)
    slimmed = slim(model, plan)
    output = Path(output) if output else run.slim_model
    with atomic_path(output) as temporary:
        slimmed.save(temporary)
    return model, slimmed, output


def deployable_source(path: str | os.PathLike) -> ModelSource:
    """The model to deploy from a path: a prune run's slimmed model, a run's model or a file.

    Raises:
        ConfigError: For a path that is neither a run folder nor a .keras file.
    """
    path = Path(path)
    if path.is_dir():
        if RunFolder(path).is_prune_run:
            slim_path = RunFolder(path).slim_model
            if not slim_path.is_file():
                slim_run(path)
            elif not zipfile.is_zipfile(slim_path):
                raise ConfigError(
                    f"{slim_path}: truncated or not a .keras file (an interrupted slim from "
                    f"before slims were written atomically?); delete it, or run tfprune slim "
                    f"{path} again, then export.")
            return ModelSource(f"{path.name} (slim)", slim_path, path)
        return ModelSource(path.name, _run_model_path(path), path)
    if path.is_file() and path.suffix == ".keras":
        return ModelSource(path.name, path)
    raise ConfigError(f"{path}: not a run folder or a .keras file.")


def bench_sources(paths) -> list[ModelSource]:
    """Every model to time: a prune run gives its masked and its slimmed model."""
    sources = []
    for path in map(Path, paths):
        if path.is_dir() and RunFolder(path).is_prune_run:
            sources.append(ModelSource(f"{path.name} (dense)", _run_model_path(path), path))
        sources.append(deployable_source(path))
    return sources


def run_data(run_dir: str | os.PathLike, source: str | None = None):
    """The ``DataBundle`` a run was trained on (``source`` replaces its data.source)."""
    from tfprune.data import load_data
    from tfprune.training import data_spec, read_run_config

    config = read_run_config(run_dir)
    if source:
        config["data"]["source"] = source
    return load_data(data_spec(config))

