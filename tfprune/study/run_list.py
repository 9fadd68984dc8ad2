"""Every run behind a report, one row each: its cell, seed, accuracies, size and training time.

The tables of ``tfprune.study.report`` average seeds; this list keeps each run
visible, so one seed can be compared with another, or a rerun with the run it
repeats. Rows are ordered by dataset, network, seed, then base model first and
the measures in the tables' column order.
"""

from __future__ import annotations

import csv
import io

from tfprune.study.records import RunRecord
from tfprune.study.tables import COLUMN_ORDER, escape_markdown

#: The CSV's columns, in order.
COLUMNS = ("run", "dataset", "network", "measure", "rounds", "pruned", "seed", "final_accuracy",
           "best_accuracy", "best_epoch", "params", "flops", "train_seconds")


def _order(record: RunRecord) -> tuple:
    measure = record.measure
    rank = -1 if measure is None else (COLUMN_ORDER.index(measure) if measure in COLUMN_ORDER
                                       else len(COLUMN_ORDER))
    return (record.dataset, record.network, record.seed, record.target, record.rounds, rank,
            measure or "", record.run_dir.name)


def run_rows(records: list[RunRecord]) -> list[dict]:
    """One dict per run with the keys of ``COLUMNS`` (accuracies in percent; None if unknown).

    Args:
        records: From ``tfprune.study.report.collect_runs``.
    """
    return [{"run": record.run_dir.name, "dataset": record.dataset, "network": record.network,
             "measure": record.measure or "base", "rounds": record.rounds,
             "pruned": record.target, "seed": record.seed,
             "final_accuracy": 100 * record.final_accuracy,
             "best_accuracy": 100 * record.best_accuracy, "best_epoch": record.best_epoch,
             "params": record.params, "flops": record.flops,
             "train_seconds": record.train_seconds}
            for record in sorted(records, key=_order)]


def runs_csv(records: list[RunRecord]) -> str:
    """``run_rows`` as CSV text (empty cells for unknown values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in run_rows(records):
        writer.writerow({key: _csv_value(value) for key, value in row.items()})
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else value


def runs_markdown(records: list[RunRecord]) -> str:
    """``run_rows`` as a Markdown table: accuracies to 2 decimals, FLOPs in millions."""
    head = ["run", "measure", "rounds", "seed", "final (%)", "best (%)", "best epoch", "params",
            "FLOPs", "training (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in run_rows(records):
        cells = [row["run"], escape_markdown(row["measure"]), str(row["rounds"]),
                 str(row["seed"]),
                 f"{row['final_accuracy']:.2f}", f"{row['best_accuracy']:.2f}",
                 _text(row["best_epoch"]), _text(row["params"], "{:,}"),
                 _text(row["flops"] and row["flops"] / 1e6, "{:.2f}M"),
                 _text(row["train_seconds"], "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _text(value, template: str = "{}") -> str:
    return "-" if value is None else template.format(value)
