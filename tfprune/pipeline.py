"""The whole way from a config to a verified edge model: prune, train, slim, export, time.

``run_pipeline`` runs prune-and-train (resumable), rebuilds the slimmed model
from the last plan, checks that it scores the same on the test split, exports
it to .tflite for each ``deploy.quantize`` and verifies every file in the
LiteRT interpreter, then times the dense (masked) and slimmed models at batch 1
in Keras and LiteRT. Everything lands in the run folder; ``pipeline.json``
holds the summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np

from tfprune.atomic import write_text
from tfprune.config import load_config
from tfprune.export.bench import bench_models, format_bench, speedups
from tfprune.export.deploy import export_all
from tfprune.run_folder import RunFolder
from tfprune.training import (
    RunFinishedError,
    TrainResult,
    finished_run,
    read_run_config,
    run_folder,
)
from tfprune.training.strategy import strategy_for
from tfprune.workers import is_chief
from tfprune.workflows.model_sources import run_data, slim_run
from tfprune.workflows.prune_run import prune


def _accuracy(model, dataset) -> float:
    correct = total = 0
    for images, labels in dataset:
        predicted = np.asarray(model(images, training=False)).argmax(-1)
        correct += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return correct / total


def run_pipeline(config: dict, *, resume: bool = False, progress=print) -> TrainResult:
    """Runs the pipeline for a validated config with ``prune`` and ``deploy`` sections.

    Args:
        config: A validated config (see ``configs/main.yaml``).
        resume: Continue the run in ``run.dir`` (an interrupted pipeline).
        progress: Called with a line of text at each step (None: silent).

    Returns:
        A ``TrainResult`` whose summary holds the pruning summary plus
        ``slim_test_accuracy``, ``exports`` and ``bench`` entries.
    """
    say = progress or (lambda line: None)
    started = time.perf_counter()
    run_dir = run_folder(config)
    if resume and RunFolder(run_dir).pipeline_summary.exists():
        raise RunFinishedError(f"{run_dir}: this pipeline already finished; nothing to resume, "
                               "and its files are left as they are.")
    try:
        result = prune(config, resume=resume)
    except RunFinishedError:  # training had finished; a later step was interrupted
        say("training had finished; going on from its saved model ...")
        result = finished_run(run_dir)
    if not is_chief(strategy_for(config)):  # one process slims, exports and times: the chief
        say("training done; the chief slims, exports and times the model")
        return result
    run_dir, section = result.run_dir, config["deploy"]
    say("slimming the pruned model with its last plan ...")
    masked, slimmed, slim_path = slim_run(run_dir)
    data = result.data if result.data is not None else run_data(run_dir)  # loaded once
    slim_accuracy = _accuracy(slimmed, data.test_dataset())
    reports = export_all(slimmed, RunFolder(run_dir).export, section["quantize"], data=data,
                         stem="slim", verify_samples=section["verify_samples"],
                         representative_samples=section["representative_samples"],
                         progress=say)
    say("timing the dense (masked) and the slimmed model at batch 1 ...")
    float_export = [report.path for report in reports if report.quantize == "none"]
    rows = bench_models([("dense", masked), ("slim", slimmed)], threads=section["threads"],
                        repeats=section["bench_repeats"], progress=say,
                        tflite_files={"slim": float_export[0]} if float_export else None)
    summary = {
        **result.summary,
        "slim_model": str(slim_path),
        "slim_test_accuracy": slim_accuracy,
        "exports": [report.as_dict() for report in reports],
        "bench": [dataclasses.asdict(row) for row in rows],
        "speedups": speedups(rows)[1],
        "bench_table": format_bench(rows),
        "pipeline_seconds_this_session": time.perf_counter() - started,
    }
    write_text(RunFolder(run_dir).pipeline_summary,
                 json.dumps(summary, indent=2, default=str) + "\n")
    return TrainResult(run_dir=run_dir, model=slimmed, summary=summary)


def pipeline_from_file(path: str | os.PathLike | None, overrides=None) -> TrainResult:
    """Loads a YAML config with ``section.key=value`` overrides and runs the pipeline."""
    return run_pipeline(load_config(path, overrides))


def resume_pipeline(run_dir: str | os.PathLike) -> TrainResult:
    """Continues an interrupted pipeline: the rest of training, then every later step."""
    return run_pipeline(read_run_config(run_dir), resume=True)

