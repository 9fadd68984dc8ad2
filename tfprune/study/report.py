"""The paper's Tables 1, 2 and 3 rebuilt from run folders, as Markdown and CSV.

Each run folder (``config.yaml`` + ``summary.json``) becomes a ``RunRecord``.
Runs without pruning are base models. Cells are the mean and standard
deviation over seeds of the best (or final) test accuracy, in percent; the
best cell of each row and round count is bold; base accuracies go in
parentheses after the network (Tables 1 and 2) or in their own column, with
every other cell as the change from it (Table 3). The CSV adds, for every
cell, its paired difference (by seed) from the base model and from every
other measure at the same round count, with a 95% interval
(``tfprune.study.paired``).

Table 1's "Loss" column is ``snip`` (sum over a filter of |theta g|), the
measure behind the paper's published numbers (the reference code's
"loss-based"; Appendix F); the paper's Eq. 3, ``loss_preservation``
(|Theta^T g|), is reported beside it as "Loss (Eq. 3)".
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from tfprune.run_folder import RunFolder, RunFolderError

#: (table, title, measure columns, cells relative to the base model?)
TABLES = (
    ("1", "Table 1: magnitude, loss preservation and the proposed measure",
     ("Mag.", "Loss", "Loss (Eq. 3)", "Proposed"), False),
    ("2", "Table 2: GraSP with and without temperature, gradient-norm preservation",
     ("GraSP (T=200)", "GraSP (T=1)", "|GraSP| (T=1)"), False),
    ("3", "Table 3: change in test accuracy from the base model",
     ("Random", "Uniform", "Mag.", "Loss", "Loss (Eq. 3)", "Proposed", "GraSP (T=200)",
      "GraSP (T=1)", "|GraSP| (T=1)"), True),
)

_PLAIN_LABELS = {"magnitude": "Mag.", "snip": "Loss", "loss_preservation": "Loss (Eq. 3)",
                 "proposed": "Proposed", "random": "Random", "uniform": "Uniform"}
#: Every column of the tables, in order (the CSV's paired-difference columns follow it).
COLUMN_ORDER = TABLES[2][2]


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
    """What the tables need from one run folder.

    Attributes:
        run_dir: The folder.
        network: Model name and width, e.g. ``vgg13 x0.25``.
        dataset: ``CIFAR-10``, ``CIFAR-100`` or the source's name.
        measure: The measure's column label, or None for a base (unpruned) run.
        rounds: Pruning rounds (0 for a base run).
        target: Fraction of filters removed (0 for a base run).
        seed: ``train.seed``.
        best_accuracy: Best test accuracy over epochs.
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


def read_run(run_dir: Path) -> RunRecord:
    """The ``RunRecord`` of one finished run folder (config.yaml + summary.json)."""
    run = RunFolder(run_dir)
    try:
        config = yaml.safe_load(run.config.read_text())
    except yaml.YAMLError as error:
        raise RunFolderError(f"{run.config}: the config is corrupted ({error}); fix or remove "
                             "the run.") from None
    summary = run.read_summary()
    model = config["model"]
    pruned = "measure" in summary
    prune = config.get("prune") or {}
    return RunRecord(
        run_dir=run_dir,
        network=f"{model['name']} x{model.get('width_multiplier', 1.0):g}",
        dataset=dataset_label(config["data"]["source"]),
        measure=measure_label(prune["measure"], prune.get("measure_options")) if pruned
        else None,
        rounds=int(summary.get("rounds_done", 0)) if pruned else 0,
        target=float(prune.get("target", 0.0)) if pruned else 0.0,
        seed=int(config["train"].get("seed", 0)),
        best_accuracy=float(summary["best_test_accuracy"]),
        final_accuracy=float(summary["final_test_accuracy"]),
        mean_train_accuracy=_mean_train_accuracy(run.metrics_csv),
        early_pruned=_early_pruned(summary.get("filters_kept")) if pruned else None,
        best_epoch=summary.get("best_epoch"),
        params=summary.get("params_after", summary.get("params")),
        flops=summary.get("flops_after"),
        train_seconds=_metrics_sum(run.metrics_csv, "seconds"),
    )


def _early_pruned(filters_kept: dict | None) -> float | None:
    """1 - kept / original filters over the first half of the layers (in graph order)."""
    if not filters_kept:
        return None
    early = list(filters_kept.values())[:max(1, len(filters_kept) // 2)]
    return 1.0 - sum(kept for kept, _ in early) / sum(total for _, total in early)


def _metrics_column(path: Path, column: str) -> list[float]:
    """One column of a run's ``metrics.csv`` (empty without the file or the column)."""
    if not path.is_file():
        return []
    with path.open() as handle:
        return [float(row[column]) for row in csv.DictReader(handle) if row.get(column)]


def _mean_train_accuracy(path: Path) -> float | None:
    values = _metrics_column(path, "train_accuracy")
    return float(np.mean(values)) if values else None


def _metrics_sum(path: Path, column: str) -> float | None:
    values = _metrics_column(path, column)
    return float(sum(values)) if values else None


def collect_runs(paths) -> list[RunRecord]:
    """Every finished run at or below ``paths``: run folders and records files.

    A folder counts when it holds ``summary.json`` beside ``config.yaml``; a
    ``*.json`` path is a records file (``tfprune.study.records``). A run found
    both ways is taken from its folder.
    """
    from tfprune.study.records import is_records_file, load_records  # records reads this module

    folders, saved = set(), {}
    for path in map(Path, paths):
        if is_records_file(path):
            saved.update({record.run_dir.name: record for record in load_records(path)})
            continue
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such run folder.")
        for summary in [path / RunFolder.SUMMARY, *path.rglob(RunFolder.SUMMARY)]:
            if summary.is_file() and RunFolder(summary.parent).is_run:
                folders.add(summary.parent)
    read = {folder.name: read_run(folder) for folder in sorted(folders)}
    return [record for _, record in sorted({**saved, **read}.items())]


def _stats(values) -> tuple[float, float, int]:
    array = np.asarray(list(values), float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std, len(array)


@dataclasses.dataclass
class TableRow:
    """A table row: a network on a dataset pruned by one fraction.

    Attributes:
        dataset: ``CIFAR-10``, ...
        network: E.g. ``vgg13 x0.25``.
        target: The pruned fraction.
        base_values: ``{seed: value}`` of its base runs, in percent.
        values: ``{(rounds, measure label): {seed: value}}`` in percent.
    """

    dataset: str
    network: str
    target: float
    base_values: dict
    values: dict

    @property
    def base(self) -> tuple[float, float, int] | None:
        """``(mean, std, seeds)`` of the base runs, or None without any."""
        return _stats(self.base_values.values()) if self.base_values else None

    @property
    def cells(self) -> dict:
        """``{(rounds, measure label): (mean, std, seeds)}``."""
        return {cell: _stats(seeds.values()) for cell, seeds in self.values.items()}


#: Metric name -> the value of a run it reads.
METRICS = {"best": lambda record: record.best_accuracy,
           "final": lambda record: record.final_accuracy,
           "mean_train": lambda record: record.mean_train_accuracy,
           "early_pruned": lambda record: record.early_pruned}


def table_rows(records: list[RunRecord], metric: str) -> tuple[list[TableRow], list[int]]:
    """One row per (dataset, network, pruned fraction), with every cell's per-seed values.

    Args:
        records: From ``collect_runs``.
        metric: A key of ``METRICS``; runs without that value are left out.

    Returns:
        ``(rows, round counts present)``.

    Raises:
        ValueError: When two runs claim the same cell and seed.
    """
    value = METRICS[metric]
    bases, groups = defaultdict(dict), defaultdict(lambda: defaultdict(dict))
    for record in records:
        if value(record) is None:
            continue
        if record.measure is None:
            seeds = bases[(record.dataset, record.network)]
        else:
            key = (record.dataset, record.network, record.target)
            seeds = groups[key][(record.rounds, record.measure)]
        if record.seed in seeds:
            raise ValueError(f"{record.run_dir}: a second run of the same cell and seed "
                             f"{record.seed}; report one of them.")
        seeds[record.seed] = 100 * float(value(record))
    rows = [TableRow(dataset, network, target, bases.get((dataset, network), {}), dict(cells))
            for (dataset, network, target), cells in sorted(groups.items())]
    rounds = sorted({r for row in rows for r, _ in row.values})
    return rows, rounds


def _format_cell(stat, base, relative: bool, bold: bool) -> str:
    if stat is None:
        return "-"
    mean, std, n = stat
    if relative:
        if base is None:
            return "-"
        mean -= base[0]
    text = f"{mean:+.2f}" if relative else f"{mean:.2f}"
    text += f" ± {std:.2f}" if n > 1 else ""
    return f"**{text}**" if bold else text


def escape_markdown(text: str) -> str:
    """Escapes Markdown table separators (``|GraSP|``)."""
    return text.replace("|", "\\|")


def _markdown_table(rows, rounds, measures, relative: bool) -> str:
    lines = []
    head = ["dataset", "network", "pruned"] + (["base"] if relative else [])
    head += [f"{r} round{'s' if r != 1 else ''}: {escape_markdown(m)}" for r in rounds
             for m in measures]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + " --- |" * len(head))
    for row in rows:
        base = f"{row.base[0]:.2f}" if row.base else "n/a"
        network = row.network if relative else f"{row.network} ({base})"
        cells = [row.dataset, network, f"{row.target:.0%}"] + ([base] if relative else [])
        for r in rounds:
            present = {m: row.cells.get((r, m)) for m in measures}
            best = max((s[0] for s in present.values() if s), default=None)
            cells += [_format_cell(present[m], row.base, relative,
                                   present[m] is not None and present[m][0] == best)
                      for m in measures]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_report(records: list[RunRecord], metric: str = "best") -> tuple[str, str]:
    """Tables 1-3 as Markdown and every cell (any measure) with paired differences as CSV.

    Args:
        records: From ``collect_runs``.
        metric: ``best`` (the paper's: best test accuracy over epochs) or ``final``.

    Returns:
        ``(markdown, csv_text)``.
    """
    if metric not in ("best", "final"):
        raise ValueError(f"metric must be 'best' or 'final', got {metric!r}.")
    rows, rounds = table_rows(records, metric)
    parts = [f"Test accuracy (%), {metric} over epochs; mean ± std over seeds; "
             f"{len(records)} runs. Base model accuracy in parentheses.\n"]
    for _, title, measures, relative in TABLES:
        parts.append(f"### {title}\n\n{_markdown_table(rows, rounds, measures, relative)}\n")
    seeds = sorted({record.seed for record in records})
    parts.append(f"Seeds: {seeds}. Runs: " + ", ".join(
        sorted(str(record.run_dir) for record in records)) + "\n")
    return "\n".join(parts), report_csv(rows, metric)


def _compared_labels(rows: list[TableRow]) -> list[str]:
    present = {label for row in rows for _, label in row.values}
    return [label for label in COLUMN_ORDER if label in present] + sorted(
        present - set(COLUMN_ORDER))


def report_csv(rows: list[TableRow], metric: str) -> str:
    """One CSV row per cell: its statistics, then paired differences (cell - other).

    For the base model and for every measure at the same round count, four
    columns: ``diff_vs_<label>`` (mean per-seed difference, points),
    ``ci_low_vs_<label>`` / ``ci_high_vs_<label>`` (95% paired-t interval) and
    ``seeds_vs_<label>`` (seeds paired).
    """
    from tfprune.study.paired import paired_difference

    others = ["base", *_compared_labels(rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["metric", "dataset", "network", "pruned", "rounds", "measure", "mean",
                     "std", "seeds", "base_mean"] + [f"{column}_vs_{other}" for other in others
                                                     for column in ("diff", "ci_low",
                                                                    "ci_high", "seeds")])
    for row in rows:
        for (r, measure), seeds in sorted(row.values.items()):
            mean, std, n = _stats(seeds.values())
            line = [metric, row.dataset, row.network, row.target, r, measure, f"{mean:.4f}",
                    f"{std:.4f}", n, f"{row.base[0]:.4f}" if row.base else ""]
            for other in others:
                against = row.base_values if other == "base" else row.values.get((r, other))
                if other == measure or not against:
                    line += ["", "", "", ""]
                    continue
                d = paired_difference(seeds, against)
                line += [_number(d.mean), _number(d.low), _number(d.high), d.seeds]
            writer.writerow(line)
    return buffer.getvalue()


def _number(value: float) -> str:
    return "" if np.isnan(value) else f"{value:.4f}"


def write_report(paths, output: str | os.PathLike, metric: str = "best",
                 records: list[RunRecord] | None = None) -> tuple[Path, Path, Path]:
    """Collects the runs under ``paths`` and writes the tables and the claim checks.

    Writes ``report.md`` (Tables 1-3 for ``metric``, then for the other
    accuracy metric, then every run on its own row), ``report.csv`` (both
    metrics, with paired differences), ``runs.csv`` (every run,
    ``tfprune.study.run_list``) and ``claims.md`` (which of the paper's claims hold at ``metric``,
    ``tfprune.study.claims``) into ``output``, and every run as a TensorBoard
    HParams trial into ``output/hparams`` (``tfprune.study.hparams``).

    Args:
        paths: Run folders, folders holding them, or records files (``collect_runs``).
        output: The folder written.
        metric: ``best`` or ``final``.
        records: The runs, if already collected from ``paths``.

    Returns:
        The three paths.
    """
    from tfprune.study.claims import check_claims, claims_markdown  # claims reads this module

    records = collect_runs(paths) if records is None else records
    if not records:
        raise FileNotFoundError(f"no finished run folders under {list(map(str, paths))}.")
    markdowns, texts = [], []
    for which in (metric, "final" if metric == "best" else "best"):
        markdown, text = build_report(records, which)
        markdowns.append(f"## {which.capitalize()} test accuracy\n\n{markdown}")
        texts.append(text if not texts else text.split("\n", 1)[1])
    from tfprune.study.run_list import runs_csv, runs_markdown  # run_list reads this module

    markdowns.append(f"## Runs\n\n{runs_markdown(records)}\n")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text("\n".join(markdowns))
    (output / "report.csv").write_text("".join(texts))
    (output / "runs.csv").write_text(runs_csv(records))
    (output / "claims.md").write_text(claims_markdown(check_claims(records,
                                                                   accuracy_metric=metric)))
    from tfprune.study.hparams import write_hparams

    write_hparams(records, output / "hparams")
    return output / "report.md", output / "report.csv", output / "claims.md"
