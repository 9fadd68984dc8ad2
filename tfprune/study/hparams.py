"""Runs as TensorBoard HParams trials: sort and filter a study's runs in TensorBoard.

Each finished run's record becomes one trial (its folder need not exist any
more): its measure, rounds, target, seed, network and dataset are the
hyperparameters; the best test accuracy after the last pruning round, best and
final test accuracy, parameters and FLOPs after pruning (and LiteRT latency
when a pipeline in the run folder measured it) are the metrics. TensorBoard's HParams dashboard then
shows them as a table and in parallel coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from tfprune.atomic import atomic_folder
from tfprune.run_folder import RunFolder

#: Metric tag -> (display name, how to read it from the run's record and pipeline.json).
METRICS = {
    "hparams/best_after_pruning_test_accuracy": (
        "best test accuracy after the last pruning round",
        lambda r, p: r.best_after_pruning),
    "hparams/best_test_accuracy": ("best test accuracy", lambda r, p: r.best_accuracy),
    "hparams/final_test_accuracy": ("final test accuracy", lambda r, p: r.final_accuracy),
    "hparams/params": ("parameters (after pruning)", lambda r, p: r.params),
    "hparams/flops": ("FLOPs (after pruning)", lambda r, p: r.flops),
    "hparams/latency_ms": ("LiteRT latency, slim, 1 thread (ms)", lambda r, p: _latency(p)),
}


def _latency(pipeline: dict | None) -> float | None:
    """The slimmed model's LiteRT batch-1 latency with one thread, if a pipeline timed it."""
    for row in (pipeline or {}).get("bench", []):
        if row.get("label") == "slim":
            latencies = {str(k): v for k, v in (row.get("litert_ms") or {}).items()}
            return latencies.get("1")
    return None


def _hyperparameters(record) -> dict:
    return {"measure": record.measure or "base", "rounds": int(record.rounds),
            "target": float(record.target), "seed": int(record.seed),
            "network": record.network, "dataset": record.dataset}


def write_hparams(records, log_dir: str | os.PathLike) -> Path:
    """Writes one HParams trial per run record under ``log_dir`` (a subfolder per run).

    Args:
        records: ``tfprune.study.report.collect_runs`` output.
        log_dir: The TensorBoard folder to write (``tensorboard --logdir`` it).

    Returns:
        ``log_dir`` as a Path.
    """
    from tensorboard.plugins.hparams import api as hp

    log_dir = Path(log_dir)
    rows = [(record, _hyperparameters(record)) for record in records]
    domains = {}
    for _, values in rows:
        for key, value in values.items():
            domains.setdefault(key, set()).add(value)
    params = [hp.HParam(key, hp.Discrete(sorted(values))) for key, values in domains.items()]
    metrics = [hp.Metric(tag, display_name=name) for tag, (name, _) in METRICS.items()]
    with atomic_folder(log_dir) as folder:  # rewritten whole: no stale trials, no duplicates
        writer = tf.summary.create_file_writer(str(folder))
        with writer.as_default():
            hp.hparams_config(hparams=params, metrics=metrics)
        writer.close()  # flushed before the folder moves into place
        for record, values in rows:
            run = RunFolder(record.run_dir)  # a records file's run may have no folder left
            pipeline = (run.read_json(run.pipeline_summary, "the pipeline summary")
                        if run.pipeline_summary.is_file() else None)
            writer = tf.summary.create_file_writer(str(folder / record.run_dir.name))
            with writer.as_default():
                hp.hparams(values, trial_id=record.run_dir.name)
                for tag, (_, read) in METRICS.items():
                    value = read(record, pipeline)
                    if value is not None:
                        tf.summary.scalar(tag, float(value), step=0)
            writer.close()
    return log_dir
