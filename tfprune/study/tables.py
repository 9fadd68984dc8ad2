"""The cells of the paper's Tables 1-3: runs grouped by network, pruned fraction and measure.

``table_rows`` turns ``RunRecord``s into one ``TableRow`` per (dataset, network,
pruned fraction), holding every cell's per-seed values for one metric
(``METRICS``): the best test accuracy after the last pruning round (the default,
``best_after_pruning``), the final one, the best over all epochs (``best``, the
paper's selection, which also counts epochs still pruning), the mean train
accuracy (Fig. 1) or the early layers' pruned fraction (Section G.2).

Table 1's "Loss" column is ``snip`` (sum over a filter of |theta g|), the
measure behind the paper's published numbers (the reference code's
"loss-based"; Appendix F); the paper's Eq. 3, ``loss_preservation``
(|Theta^T g|), is reported beside it as "Loss (Eq. 3)".
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from tfprune.study.records import RunRecord

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

#: Every column of the tables, in order (the CSV's paired-difference columns follow it).
COLUMN_ORDER = TABLES[2][2]


def stats(values) -> tuple[float, float, int]:
    """``(mean, sample std, count)`` of ``values`` (std 0 for one value)."""
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
        return stats(self.base_values.values()) if self.base_values else None

    @property
    def cells(self) -> dict:
        """``{(rounds, measure label): (mean, std, seeds)}``."""
        return {cell: stats(seeds.values()) for cell, seeds in self.values.items()}


#: Metric name -> the value of a run it reads.
METRICS = {"best_after_pruning": lambda record: record.best_after_pruning,
           "best": lambda record: record.best_accuracy,
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


def escape_markdown(text: str) -> str:
    """Escapes Markdown table separators (``|GraSP|``)."""
    return text.replace("|", "\\|")
