"""Across finished prune runs: layer-wise pruning ratios (Figs. 16-20) and curves (Fig. 1)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import tensorflow as tf

from tfprune.analysis.figures import plot_layer_ratios, plot_lines
from tfprune.atomic import write_text
from tfprune.outputs import OutputFolder
from tfprune.run_folder import RunFolder
from tfprune.study.records import read_run


def run_label(run_dir: Path) -> str:
    """``<measure label>, <rounds> rounds (<folder>)`` for a prune run; ``base (<folder>)`` else."""
    record = read_run(run_dir)
    if record.measure is None:
        return f"base ({run_dir.name})"
    rounds = record.rounds
    return f"{record.measure}, {rounds} round{'s' if rounds != 1 else ''} ({run_dir.name})"


#: The files ``analyze_runs`` may write into its output folder.
ANALYSIS_FILES = ("layer_ratios.csv", "layer_ratios.png", "curves.csv", "train_accuracy.png",
                  "test_accuracy.png", "analysis_tensorboard")


def analyze_runs(run_dirs, output: str | os.PathLike, force: bool = False) -> dict[str, Path]:
    """Writes layer_ratios.csv/png, curves.csv/png and TensorBoard scalars into ``output``.

    The TensorBoard scalars go to ``output/analysis_tensorboard``; a later
    analysis into the same folder removes the event files the earlier one wrote
    there, and nothing else.

    Args:
        run_dirs: Finished ``tfprune prune`` (or train) run folders.
        output: The folder to write to.
        force: Replace files in ``output`` that tfprune did not write.

    Returns:
        ``{name: path}`` of the files written.

    Raises:
        FileNotFoundError: For a folder without summary.json / metrics.json.
        tfprune.outputs.OutputExistsError: Before writing anything, for a file in
            ``output`` that tfprune did not write.
    """
    output = Path(output)
    folder = OutputFolder(output, force)
    folder.check(ANALYSIS_FILES)
    ratios, curves = {}, {}
    for run_dir in map(Path, run_dirs):
        run = RunFolder(run_dir)
        for path in (run.summary, run.metrics_json, run.config):
            if not path.is_file():
                raise FileNotFoundError(f"{run_dir}: no {path.name}; is it a finished tfprune "
                                        "run?")
        label = run_label(run_dir)
        summary = run.read_summary()
        kept = summary.get("filters_kept", {})
        if kept:
            ratios[label] = {layer: 1 - k / n for layer, (k, n) in kept.items()}
        curves[label] = run.read_metrics()
    output.mkdir(parents=True, exist_ok=True)
    files = {}
    if ratios:
        files["layer_ratios.csv"] = output / "layer_ratios.csv"
        write_csv(files["layer_ratios.csv"], ["run", "layer", "fraction_pruned"],
                  [[label, layer, f"{value:.4f}"] for label, values in ratios.items()
                   for layer, value in values.items()])
        files["layer_ratios.png"] = output / "layer_ratios.png"
        plot_layer_ratios(ratios, files["layer_ratios.png"])
    files["curves.csv"] = output / "curves.csv"
    write_csv(files["curves.csv"],
              ["run", "epoch", "train_accuracy", "test_accuracy", "train_loss", "test_loss"],
              [[label, row["epoch"], row["train_accuracy"], row["test_accuracy"],
                row["train_loss"], row["test_loss"]] for label, rows in curves.items()
               for row in rows])
    for split in ("train", "test"):
        name = f"{split}_accuracy.png"
        files[name] = output / name
        plot_lines({label: ([r["epoch"] for r in rows], [r[f"{split}_accuracy"] for r in rows])
                    for label, rows in curves.items()},
                   f"{split} accuracy", "epoch", "accuracy", files[name])
    events = output / "analysis_tensorboard"
    for name in folder.written():  # the last analysis's events, and only those
        if name.startswith("analysis_tensorboard/"):
            (output / name).unlink(missing_ok=True)
    before = set(events.glob("events.out.tfevents.*"))
    writer = tf.summary.create_file_writer(str(events))
    with writer.as_default():
        for label, values in ratios.items():
            for step, (layer, value) in enumerate(values.items()):
                tf.summary.scalar(f"layer_ratio/{label}", value, step=step,
                                  description=f"layer {step}: {layer}")
        for label, rows in curves.items():
            for row in rows:
                tf.summary.scalar(f"test_accuracy/{label}", row["test_accuracy"],
                                  step=int(row["epoch"]))
    writer.close()
    files["tensorboard"] = events
    written = [name for name in ANALYSIS_FILES[:-1] if name in files]
    written += [f"analysis_tensorboard/{path.name}"
                for path in set(events.glob("events.out.tfevents.*")) - before]
    folder.record(["analysis_tensorboard", *written])
    return files


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """Writes a CSV file atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())
