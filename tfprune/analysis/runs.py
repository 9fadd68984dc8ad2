"""Across finished prune runs: layer-wise pruning ratios (Figs. 16-20) and curves (Fig. 1)."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import tensorflow as tf

from tfprune.analysis.figures import plot_layer_ratios, plot_lines
from tfprune.run_folder import RunFolder
from tfprune.study.records import read_run


def run_label(run_dir: Path) -> str:
    """``<measure label>, <rounds> rounds (<folder>)`` for a prune run; ``base (<folder>)`` else."""
    record = read_run(run_dir)
    if record.measure is None:
        return f"base ({run_dir.name})"
    rounds = record.rounds
    return f"{record.measure}, {rounds} round{'s' if rounds != 1 else ''} ({run_dir.name})"


def analyze_runs(run_dirs, output: str | os.PathLike) -> dict[str, Path]:
    """Writes layer_ratios.csv/png, curves.csv/png and TensorBoard scalars into ``output``.

    Args:
        run_dirs: Finished ``tfprune prune`` (or train) run folders.
        output: The folder to write to.

    Returns:
        ``{name: path}`` of the files written.

    Raises:
        FileNotFoundError: For a folder without summary.json / metrics.json.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
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
    files = {}
    if ratios:
        files["layer_ratios.csv"] = output / "layer_ratios.csv"
        with files["layer_ratios.csv"].open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["run", "layer", "fraction_pruned"])
            for label, values in ratios.items():
                writer.writerows([label, layer, f"{value:.4f}"] for layer, value in values.items())
        files["layer_ratios.png"] = output / "layer_ratios.png"
        plot_layer_ratios(ratios, files["layer_ratios.png"])
    files["curves.csv"] = output / "curves.csv"
    with files["curves.csv"].open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["run", "epoch", "train_accuracy", "test_accuracy", "train_loss",
                         "test_loss"])
        for label, rows in curves.items():
            writer.writerows([label, row["epoch"], row["train_accuracy"], row["test_accuracy"],
                              row["train_loss"], row["test_loss"]] for row in rows)
    for split in ("train", "test"):
        name = f"{split}_accuracy.png"
        files[name] = output / name
        plot_lines({label: ([r["epoch"] for r in rows], [r[f"{split}_accuracy"] for r in rows])
                    for label, rows in curves.items()},
                   f"{split} accuracy", "epoch", "accuracy", files[name])
    if (output / "tensorboard").is_dir():  # a fresh analysis replaces the last one's events
        shutil.rmtree(output / "tensorboard")
    writer = tf.summary.create_file_writer(str(output / "tensorboard"))
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
    files["tensorboard"] = output / "tensorboard"
    return files
