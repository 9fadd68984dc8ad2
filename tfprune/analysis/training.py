"""``analyze_training``: train a config while recording the dynamics, then draw the figures."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from tfprune.analysis.dynamics import DynamicsRecorder
from tfprune.analysis.figures import plot_dynamics, plot_hg_scatter, plot_lines
from tfprune.config import ConfigError, load_config
from tfprune.run_folder import RunFolder
from tfprune.training import TrainingExtension, TrainResult, read_run_config, train


class DynamicsExtension(TrainingExtension):
    """Adds a ``DynamicsRecorder`` writing to ``RUN_DIR/analysis``.

    Args:
        config: The validated config (its training temperature scales g).
        hessian_epochs: Epochs with Hg (default: 0, the middle and the last).
        num_samples: Samples for g per epoch.
        samples_per_class: Memory per class for Hg.
    """

    def __init__(self, config: dict, hessian_epochs=None, num_samples: int = 512,
                 samples_per_class: int = 10):
        epochs = config["train"]["epochs"]
        if hessian_epochs is None:
            hessian_epochs = sorted({0, epochs // 2, epochs})
        bad = [e for e in hessian_epochs if not 0 <= e <= epochs]
        if bad:
            raise ConfigError(f"--hessian-epochs: {bad} outside 0..train.epochs ({epochs}).")
        if num_samples < 1 or samples_per_class < 1:
            raise ConfigError("--num-samples and --samples-per-class must be >= 1.")
        self.config = config
        self.hessian_epochs = list(hessian_epochs)
        self.num_samples = num_samples
        self.samples_per_class = samples_per_class

    def callbacks(self, model, data, run_dir: Path, start_epoch: int) -> list:
        """The recorder, resumed at ``start_epoch``."""
        return [DynamicsRecorder(
            data, RunFolder(run_dir).analysis, hessian_epochs=self.hessian_epochs,
            num_samples=self.num_samples, samples_per_class=self.samples_per_class,
            temperature=self.config["train"]["temperature"],
            start_epoch=start_epoch, log_dir=RunFolder(run_dir).analysis_logs,
            seed=self.config["train"]["seed"],
        )]


def draw_dynamics(analysis_dir: str | os.PathLike) -> list[Path]:
    """Draws the figures of a finished ``analysis`` folder; returns the PNG paths."""
    folder = Path(analysis_dir)
    rows = list(csv.DictReader((folder / "dynamics.csv").open()))
    paths = [folder / "dynamics.png"]
    plot_dynamics(rows, paths[0])
    norms, names = {}, None
    for row in rows:
        epoch = int(row["epoch"])
        with np.load(folder / f"epoch_{epoch:03d}.npz") as record:
            names = [str(n) for n in record["names"]]
            norms[epoch] = record["gradient_norms"]
            if "theta_hg" in record.files:
                path = folder / f"hg_vs_g_epoch_{epoch:03d}.png"
                plot_hg_scatter(record["theta_g"], record["theta_hg"], epoch,
                                float(row["hg_g_pearson"]), path)
                paths.append(path)
    epochs = sorted(norms)
    paths.append(folder / "gradient_norms.png")
    plot_lines({name: (epochs, [norms[e][i] for e in epochs]) for i, name in enumerate(names)},
               "layer-wise gradient norm", "epoch", "||g|| of the kernel", paths[-1], log=True)
    return paths


def analyze_training(config: dict, *, resume: bool = False, hessian_epochs=None,
                     num_samples: int = 512, samples_per_class: int = 10) -> TrainResult:
    """Trains ``config`` with the dynamics recorded, then draws the figures.

    Writes ``RUN_DIR/analysis``: ``dynamics.csv``, ``epoch_<e>.npz``,
    ``dynamics.png``, ``hg_vs_g_epoch_<e>.png``, ``gradient_norms.png``; and
    TensorBoard scalars under ``RUN_DIR/tensorboard/analysis``. The summary
    gains ``analysis``: the dynamics rows.
    """
    extension = DynamicsExtension(config, hessian_epochs, num_samples, samples_per_class)
    result = train(config, resume=resume, extension=extension)
    analysis = RunFolder(result.run_dir).analysis
    draw_dynamics(analysis)
    result.summary["analysis"] = list(csv.DictReader((analysis / "dynamics.csv").open()))
    return result


def analyze_training_from_file(path, overrides=None, **options) -> TrainResult:
    """Loads a YAML config with overrides and runs ``analyze_training``."""
    return analyze_training(load_config(path, overrides), **options)


def resume_analysis(run_dir, **options) -> TrainResult:
    """Continues an interrupted ``analyze_training`` run."""
    return analyze_training(read_run_config(run_dir), resume=True, **options)
