"""Run-folder callbacks: per-epoch metrics (CSV + JSON) and resumable checkpoints."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import keras

from tfprune.atomic import atomic_path, write_text
from tfprune.importance.batchnorm import average_batchnorm_across_workers
from tfprune.run_folder import RunFolder
from tfprune.trained_model import trained_model

#: Keras log key -> metrics-file column.
METRIC_COLUMNS = {
    "loss": "train_loss",
    "accuracy": "train_accuracy",
    "val_loss": "test_loss",
    "val_accuracy": "test_accuracy",
}


class AverageBatchNormAcrossWorkers(keras.callbacks.Callback):
    """At each epoch end, BatchNorm moving statistics become their mean over the workers.

    Under a multi-worker strategy Keras keeps them per worker; averaged before the
    checkpoint, every worker holds the same model, and a resumed run (every
    worker loads the chief's checkpoint) goes on as an uninterrupted one. With one
    worker it does nothing.
    """

    def on_epoch_end(self, epoch, logs=None):
        """Averages the statistics (before the run folder's callbacks save anything)."""
        average_batchnorm_across_workers(self.model)


class MetricsLogger(keras.callbacks.Callback):
    """Writes one row per finished epoch to ``metrics.csv`` and ``metrics.json``.

    Columns: epoch (1-based count of finished epochs), lr, train_loss,
    train_accuracy, test_loss, test_accuracy, seconds. On a resumed run, rows
    past the resumed epoch are dropped first, so each epoch appears once.

    Args:
        run_dir: The run folder.
        start_epoch: The epoch training starts from (finished epochs of a resumed run).
        extra_columns: More log keys to record as columns (e.g. ``kept_filters``).
    """

    def __init__(self, run_dir: str | os.PathLike, start_epoch: int = 0, extra_columns=()):
        super().__init__()
        self.start_epoch = start_epoch
        self.extra_columns = tuple(extra_columns)
        self.run = RunFolder(run_dir)
        self.csv_path = self.run.metrics_csv
        self.json_path = self.run.metrics_json
        self.rows: list[dict] = []
        self._epoch_start = 0.0

    def on_train_begin(self, logs=None):
        """Drops rows past ``start_epoch`` left by an interrupted run."""
        rows = self.run.read_metrics()
        self.rows = [row for row in rows if row["epoch"] <= self.start_epoch]

    def on_epoch_begin(self, epoch, logs=None):
        """Starts the epoch timer."""
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        """Appends the epoch's row and rewrites both files."""
        logs = logs or {}
        row = {"epoch": epoch + 1, "lr": _float(logs.get("learning_rate"))}
        row.update({column: _float(logs.get(key)) for key, column in METRIC_COLUMNS.items()})
        row.update({column: logs.get(column) for column in self.extra_columns})
        row["seconds"] = round(time.perf_counter() - self._epoch_start, 3)
        self.rows.append(row)
        self._write()

    def _write(self) -> None:
        write_text(self.json_path, json.dumps(self.rows, indent=1))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.csv_path, buffer.getvalue())


def _float(value):
    return None if value is None else float(value)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights and optimizer state) after every epoch.

    Writes ``checkpoints/epoch_<e>.keras`` atomically, then commits it as one
    unit with ``checkpoints/state.json`` (``RunFolder.commit_checkpoint``: the
    state names the file and its SHA-256; older checkpoints go after it);
    ``tfprune train --resume`` reads and verifies both.

    Args:
        run_dir: The run folder.
    """

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__()
        self.run = RunFolder(run_dir)

    def on_epoch_end(self, epoch, logs=None):
        """Saves the checkpoint, then records the finished epoch."""
        path = self.run.checkpoint_path(epoch + 1)
        with atomic_path(path) as temporary:
            trained_model(self.model).save(temporary)
        self.run.commit_checkpoint(epoch + 1, path)


def finished_epochs(run_dir: str | os.PathLike) -> int:
    """Returns how many epochs the run folder's last checkpoint holds (0 if none)."""
    return RunFolder(run_dir).finished_epochs()
