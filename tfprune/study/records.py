"""A finished run as a ``RunRecord``, and a study's runs as one JSON file of them.

Tables are built from ``RunRecord``s alone, so a finished run can be kept as its
record instead of its folder (which holds checkpoints and TensorBoard logs that
stay out of git). A record carries the run's per-epoch log, the CPU it ran on
and the code's commit, so every number in a table can be traced back to its
epochs. ``tfprune report RUNS... --save-records FILE`` merges the records it read
into FILE (a run read again replaces its old record; records of runs no longer
on disk are kept), and ``tfprune report FILE`` builds the tables from it. The
file is plain JSON, written atomically, never executed.

Selection after the last round: while a run is still pruning, its test accuracy
is that of a network not yet at its target (the round after epoch ``e`` changes
the network the test of epoch ``e + 1`` sees). ``best_after_pruning`` is the best
test accuracy over the epochs whose network was already at its final size.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

import yaml

from tfprune.atomic import write_text
from tfprune.run_folder import RunFolder, RunFolderError

_PLAIN_LABELS = {"magnitude": "Mag.", "snip": "Loss", "loss_preservation": "Loss (Eq. 3)",
                 "proposed": "Proposed", "random": "Random", "uniform": "Uniform"}

#: Added to the measure label of a run whose optimizer was reset at each round, so it is
#: its own cell (paired with the default runs in report.csv) rather than a duplicate.
RESET_SUFFIX = " + optimizer reset"

#: The columns of a run's per-epoch log kept in its record (those present in metrics.csv).
EPOCH_COLUMNS = ("epoch", "lr", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                 "kept_filters", "seconds")


def measure_label(measure: str, options: dict | None = None) -> str:
    """The paper's column name for a measure and its options (its own name otherwise)."""
    options = options or {}
    if measure in ("grasp", "grasp_abs"):
        default = 200.0 if measure == "grasp" else 1.0
        temperature = float(options.get("temperature", default))
        name = "GraSP" if measure == "grasp" else "|GraSP|"
        return f"{name} (T={temperature:g})"
    return _PLAIN_LABELS.get(measure, measure)


def dataset_label(source: str) -> str:
    """``CIFAR-10`` / ``CIFAR-100`` for their sources, else the source's file stem."""
    name = Path(source).name.lower()
    if "cifar100" in name or "cifar-100" in name:
        return "CIFAR-100"
    if "cifar10" in name or "cifar-10" in name:
        return "CIFAR-10"
    return Path(source).name


@dataclasses.dataclass
class RunRecord:
    """What the tables need from one finished run.

    Attributes:
        run_dir: The folder.
        network: Model name and width, e.g. ``vgg13 x0.25``.
        dataset: ``CIFAR-10``, ``CIFAR-100`` or the source's name.
        measure: The measure's column label, or None for a base (unpruned) run.
        rounds: Pruning rounds (0 for a base run).
        target: Fraction of filters removed (0 for a base run).
        seed: ``train.seed``.
        best_accuracy: Best test accuracy over all epochs (also those still pruning).
        final_accuracy: Test accuracy after the last epoch.
        mean_train_accuracy: Train accuracy averaged over the epochs (how fast the
            model converges, Fig. 1), or None without ``metrics.csv``.
        early_pruned: The fraction of filters removed from the first half of the
            prunable layers in graph order (Section G.2), or None for a base run.
        best_epoch: The epoch of ``best_accuracy`` (1-based), or None if not recorded.
        params: Parameters of the trained model (after pruning), or None.
        flops: FLOPs of the trained model after pruning, or None (base runs).
        train_seconds: Training time summed over the epochs of ``metrics.csv``, over
            every session of a resumed run, or None without it.
        epochs: The per-epoch log (``{column: value}`` per epoch, columns of
            ``EPOCH_COLUMNS``), or None when it was not archived.
        cpu: The CPU model of the machine that ran it, or None if not recorded.
        code_commit: The commit of the code that trained it, or None if not recorded.
    """

    run_dir: Path
    network: str
    dataset: str
    measure: str | None
    rounds: int
    target: float
    seed: int
    best_accuracy: float
    final_accuracy: float
    mean_train_accuracy: float | None = None
    early_pruned: float | None = None
    best_epoch: int | None = None
    params: int | None = None
    flops: int | None = None
    train_seconds: float | None = None
    epochs: list[dict] | None = None
    cpu: str | None = None
    code_commit: str | None = None

    @property
    def pruned_by_epoch(self) -> int | None:
        """The epoch whose round brought the network to its final size (0 for a base run).

        From the log's ``kept_filters``: the first epoch logging the final count.
        None without a log (or without that column) for a pruned run.
        """
        if self.measure is None:
            return 0
        kept = [row.get("kept_filters") for row in self.epochs or ()]
        if not kept or kept[-1] is None:
            return None
        return next(row["epoch"] for row in self.epochs if row.get("kept_filters") == kept[-1])

    @property
    def best_after_pruning(self) -> float | None:
        """Best test accuracy over the epochs tested at the final size (after the last round).

        Without a log it is known only when the best is the final accuracy (the
        last epoch is tested at the final size); otherwise None.
        """
        done = self.pruned_by_epoch
        if done is not None and self.epochs:
            tested = [row["test_accuracy"] for row in self.epochs
                      if row["epoch"] > done and row.get("test_accuracy") is not None]
            return max(tested) if tested else None
        if self.measure is None or self.best_accuracy == self.final_accuracy:
            return self.best_accuracy
        return None

    @property
    def label(self) -> str:
        """The run's name (its folder's)."""
        return self.run_dir.name


def read_epochs(path: Path) -> list[dict] | None:
    """The per-epoch log of a ``metrics.csv`` (numbers; epochs as int), or None without it."""
    if not path.is_file():
        return None
    rows = []
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            entry = {}
            for column in EPOCH_COLUMNS:
                value = row.get(column)
                if value not in (None, ""):
                    entry[column] = int(float(value)) if column in ("epoch", "kept_filters") \
                        else float(value)
            rows.append(entry)
    return rows or None


def read_run(run_dir: Path) -> RunRecord:
    """The ``RunRecord`` of one finished run folder (config.yaml + summary.json)."""
    run = RunFolder(run_dir)
    try:
        config = yaml.safe_load(run.config.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{run.config}: the config is corrupted ({error}); fix or remove "
                             "the run.") from None
    summary = run.read_summary()
    model = config["model"]
    pruned = "measure" in summary
    prune = config.get("prune") or {}
    epochs = read_epochs(run.metrics_csv)
    return RunRecord(
        run_dir=Path(run_dir),
        network=f"{model['name']} x{model.get('width_multiplier', 1.0):g}",
        dataset=dataset_label(config["data"]["source"]),
        measure=measure_label(prune["measure"], prune.get("measure_options"))
        + (RESET_SUFFIX if prune.get("reset_optimizer") else "") if pruned else None,
        rounds=int(summary.get("rounds_done", 0)) if pruned else 0,
        target=float(prune.get("target", 0.0)) if pruned else 0.0,
        seed=int(config["train"].get("seed", 0)),
        best_accuracy=float(summary["best_test_accuracy"]),
        final_accuracy=float(summary["final_test_accuracy"]),
        mean_train_accuracy=_mean([row.get("train_accuracy") for row in epochs or ()]),
        early_pruned=_early_pruned(summary.get("filters_kept")) if pruned else None,
        best_epoch=summary.get("best_epoch"),
        params=summary.get("params_after", summary.get("params")),
        flops=summary.get("flops_after"),
        train_seconds=_sum([row.get("seconds") for row in epochs or ()]),
        epochs=epochs,
        cpu=summary.get("cpu"),
        code_commit=summary.get("code_commit"),
    )


def _early_pruned(filters_kept: dict | None) -> float | None:
    """1 - kept / original filters over the first half of the layers (in graph order)."""
    if not filters_kept:
        return None
    early = list(filters_kept.values())[:max(1, len(filters_kept) // 2)]
    return 1.0 - sum(kept for kept, _ in early) / sum(total for _, total in early)


def _mean(values) -> float | None:
    values = [value for value in values if value is not None]
    return float(sum(values) / len(values)) if values else None


def _sum(values) -> float | None:
    values = [value for value in values if value is not None]
    return float(sum(values)) if values else None


def stamp(records: list[RunRecord], code_commit: str | None = None,
          cpu: str | None = None) -> list[RunRecord]:
    """``records`` with a missing CPU / commit filled in (for runs just read on this machine)."""
    return [dataclasses.replace(record, cpu=record.cpu or cpu,
                                code_commit=record.code_commit or code_commit)
            for record in records]


def collect_runs(paths) -> list[RunRecord]:
    """Every finished run at or below ``paths``: run folders and records files.

    A folder counts when it holds ``summary.json`` beside ``config.yaml``; a
    ``*.json`` path is a records file. A run found both ways is taken from its
    folder, with what only its saved record knows (its log, CPU, commit) kept.
    """
    folders, saved = set(), {}
    for path in map(Path, paths):
        if is_records_file(path):
            saved.update({record.label: record for record in load_records(path)})
            continue
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run folder.")
        for summary in [path / RunFolder.SUMMARY, *path.rglob(RunFolder.SUMMARY)]:
            if summary.is_file() and RunFolder(summary.parent).is_run:
                folders.add(summary.parent)
    read = {}
    for folder in sorted(folders):
        record = read_run(folder)
        old = saved.get(record.label)
        if old is not None:
            record = dataclasses.replace(record, epochs=record.epochs or old.epochs,
                                         cpu=record.cpu or old.cpu,
                                         code_commit=record.code_commit or old.code_commit)
        read[record.label] = record
    return [record for _, record in sorted({**saved, **read}.items())]


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
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
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
    """Merges ``records`` into the file at ``path`` (by run name, the newer one kept).

    One record per line. The file is replaced atomically: a failure (a full disk)
    leaves the old file as it was.
    """
    path = Path(path)
    merged = {record.label: record for record in (load_records(path) if path.is_file() else [])}
    merged.update({record.label: record for record in records})
    lines = [json.dumps({**dataclasses.asdict(record), "run_dir": str(record.run_dir)})
             for _, record in sorted(merged.items())]
    write_text(path, "[\n" + ",\n".join(lines) + "\n]\n")
    return path
