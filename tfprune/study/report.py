"""The paper's Tables 1, 2 and 3 rebuilt from run records, as Markdown and CSV.

Each finished run (its folder, or its record in a records file) becomes a
``RunRecord`` (``tfprune.study.records``). Runs without pruning are base models.
Cells are the mean and standard deviation over seeds of a test accuracy, in
percent: by default the best over the epochs after the last pruning round
(``best_after_pruning``), also the final one and the best over all epochs (the
paper's, which counts epochs of networks not yet at their target). The best
cell of each row and round count is bold; base accuracies go in parentheses
after the network (Tables 1 and 2) or in their own column, with every other
cell as the change from it (Table 3). The CSV adds, for every cell, its paired
difference (by seed) from the base model and from every other measure at the
same round count, with a 95% interval (``tfprune.study.paired``).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from tfprune.atomic import write_text
from tfprune.outputs import OutputFolder
from tfprune.study.claims import check_claims, claims_markdown
from tfprune.study.hparams import write_hparams
from tfprune.study.paired import paired_difference
from tfprune.study.records import RunRecord, collect_runs, dataset_label, measure_label, read_run
from tfprune.study.run_list import runs_csv, runs_markdown
from tfprune.study.tables import (
    COLUMN_ORDER,
    METRICS,
    TABLES,
    TableRow,
    escape_markdown,
    stats,
    table_rows,
)

#: The accuracy metrics a report shows, each with the words its tables are headed by.
ACCURACY_METRICS = {
    "best_after_pruning": "best over the epochs after the last pruning round",
    "final": "after the last epoch",
    "best": "best over all epochs (also those before the last round: the paper's selection)",
}

__all__ = ["ACCURACY_METRICS", "COLUMN_ORDER", "TABLES", "RunRecord", "build_report",
           "collect_runs", "dataset_label", "escape_markdown", "measure_label", "read_run",
           "report_csv", "write_report"]


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
        metric: A key of ``ACCURACY_METRICS``.

    Returns:
        ``(markdown, csv_text)``.
    """
    if metric not in ACCURACY_METRICS:
        raise ValueError(f"metric must be one of {sorted(ACCURACY_METRICS)}, got {metric!r}.")
    rows, rounds = table_rows(records, metric)
    counted = sum(METRICS[metric](record) is not None for record in records)
    parts = [f"Test accuracy (%), {ACCURACY_METRICS[metric]}; mean ± std over seeds; "
             f"{counted} of {len(records)} runs (the others have no per-epoch log to select "
             "from). Base model accuracy in parentheses.\n"]
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
    others = ["base", *_compared_labels(rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["metric", "dataset", "network", "pruned", "rounds", "measure", "mean",
                     "std", "seeds", "base_mean"] + [f"{column}_vs_{other}" for other in others
                                                     for column in ("diff", "ci_low",
                                                                    "ci_high", "seeds")])
    for row in rows:
        for (r, measure), seeds in sorted(row.values.items()):
            mean, std, n = stats(seeds.values())
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


#: The files ``write_report`` writes into its output folder.
REPORT_FILES = ("report.md", "report.csv", "runs.csv", "claims.md", "hparams")


def write_report(paths, output: str | os.PathLike, metric: str = "best_after_pruning",
                 records: list[RunRecord] | None = None,
                 force: bool = False) -> tuple[Path, Path, Path]:
    """Collects the runs under ``paths`` and writes the tables and the claim checks.

    Writes ``report.md`` (Tables 1-3 for ``metric``, then for the other
    accuracy metrics, then every run on its own row), ``report.csv`` (every
    metric, with paired differences), ``runs.csv`` (every run,
    ``tfprune.study.run_list``) and ``claims.md`` (which of the paper's claims
    hold at ``metric``, ``tfprune.study.claims``) into ``output``, each
    atomically, and every run as a TensorBoard HParams trial into
    ``output/hparams`` (``tfprune.study.hparams``).

    Args:
        paths: Run folders, folders holding them, or records files (``collect_runs``).
        output: The folder written.
        metric: A key of ``ACCURACY_METRICS``.
        records: The runs, if already collected from ``paths``.
        force: Replace files in ``output`` that tfprune did not write
            (``tfprune.outputs.OutputFolder``); without it they are refused.

    Returns:
        The paths of report.md, report.csv and claims.md.

    Raises:
        tfprune.outputs.OutputExistsError: Before writing anything, for a file in
            ``output`` that tfprune did not write.
    """
    folder = OutputFolder(output, force)
    folder.check(REPORT_FILES)
    records = collect_runs(paths) if records is None else records
    if not records:
        raise FileNotFoundError(f"no finished run folders under {list(map(str, paths))}.")
    markdowns, texts = [], []
    for which in [metric, *(other for other in ACCURACY_METRICS if other != metric)]:
        markdown, text = build_report(records, which)
        markdowns.append(f"## Test accuracy, {ACCURACY_METRICS[which]} ({which})\n\n{markdown}")
        texts.append(text if not texts else text.split("\n", 1)[1])
    markdowns.append(f"## Runs\n\n{runs_markdown(records)}\n")
    output = Path(output)
    write_text(output / "report.md", "\n".join(markdowns))
    write_text(output / "report.csv", "".join(texts))
    write_text(output / "runs.csv", runs_csv(records))
    write_text(output / "claims.md",
               claims_markdown(check_claims(records, accuracy_metric=metric)))
    write_hparams(records, output / "hparams")
    folder.record(REPORT_FILES)
    return output / "report.md", output / "report.csv", output / "claims.md"
