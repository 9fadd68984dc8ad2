"""``train``: the paper's training recipe for a config, into a resumable run folder."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras

from tfprune import models
from tfprune.atomic import atomic_path, ensure_space, write_text
from tfprune.config import ConfigError, load_config, save_config
from tfprune.data import DataBundle, DataSpec, load_data
from tfprune.provenance import code_commit, machine_cpu
from tfprune.run_folder import RunFolder
from tfprune.training.callbacks import AverageBatchNormAcrossWorkers, EpochCheckpoint, MetricsLogger
from tfprune.training.keras_workarounds import fit_workarounds
from tfprune.training.loss import TemperatureCrossEntropy
from tfprune.training.lr_schedule import EpochPhaseSchedule, scale_phases
from tfprune.training.strategy import strategy_for
from tfprune.workers import is_chief, worker_index


class TrainingExtension:
    """Hooks that turn plain training into something more (e.g. prune-and-train).

    Subclasses override what they need; the defaults change nothing.
    """

    #: Extra per-epoch log keys written to metrics.csv/json.
    columns: tuple = ()

    def check(self, model, data) -> None:
        """Raises ``ConfigError`` for what would fail later, before the run folder is written."""

    def callbacks(self, model, data, run_dir: Path, start_epoch: int) -> list:
        """Callbacks that run before the run-folder ones at each epoch end."""
        return []

    def summary(self, model) -> dict:
        """Extra entries for summary.json."""
        return {}

    def initial_model(self, config: dict, data: DataBundle) -> keras.Model | None:
        """The compiled model a new run starts from (None: the config's, built and compiled)."""
        return None

    def fit_model(self, model: keras.Model, config: dict) -> keras.Model:
        """The model ``fit`` runs (e.g. a Distiller training ``model``); default ``model``."""
        return model


@dataclasses.dataclass
class TrainResult:
    """What a finished training run produced.

    Attributes:
        run_dir: The run folder.
        model: The trained model.
        summary: The contents of ``summary.json``.
        data: The ``DataBundle`` it trained on, where this process loaded it
            (None for a run read back from its folder).
    """

    run_dir: Path
    model: keras.Model
    summary: dict
    data: object = None


def run_folder(config: dict) -> Path:
    """Returns ``run.dir``, or ``runs/<run.name>`` when it is null."""
    return Path(config["run"]["dir"] or Path("runs") / config["run"]["name"])


def data_spec(config: dict) -> DataSpec:
    """Builds the ``DataSpec`` of a config's ``data`` section.

    ``train.seed`` seeds the order and augmentation; ``data.subset_seed`` the subsets.
    """
    return DataSpec(**config["data"], seed=config["train"]["seed"])


def model_builder(config: dict):
    """The registered builder of ``model.name``; ConfigError naming the key if unknown."""
    try:
        return models.get_builder(config["model"]["name"])
    except ValueError as error:
        raise ConfigError(f"model.name: {error}") from None


def build_model(config: dict, data: DataBundle) -> keras.Model:
    """Builds the config's model for the data's classes and image shape."""
    section = config["model"]
    builder = model_builder(config)
    keras.utils.set_random_seed(config["train"]["seed"])
    return builder(
        width_multiplier=section["width_multiplier"], num_classes=data.num_classes,
        input_shape=data.input_shape, weight_decay=config["optimizer"]["weight_decay"],
        kernel_initializer=section["kernel_initializer"], **section["options"],
    )


def compile_model(model: keras.Model, config: dict) -> None:
    """Compiles with SGD (momentum), temperature cross-entropy and accuracy."""
    optimizer = keras.optimizers.SGD(
        learning_rate=config["train"]["lr_values"][0],
        momentum=config["optimizer"]["momentum"], nesterov=config["optimizer"]["nesterov"],
    )
    loss = TemperatureCrossEntropy(config["train"]["temperature"])
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def lr_schedule(config: dict) -> EpochPhaseSchedule:
    """The config's learning-rate phases scaled to ``train.epochs``."""
    train = config["train"]
    return EpochPhaseSchedule(train["lr_values"], scale_phases(train["lr_phases"], train["epochs"]))


def initial_weights_path(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps its weights at initialization (for distance-from-init measures)."""
    return RunFolder(run_dir).initial_weights


def _verbosity(setting) -> int:
    if setting == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


class RunFinishedError(ConfigError):
    """The run already finished: there is nothing to resume, and nothing in it is changed."""


def _check_run_folder(run: RunFolder, resume: bool) -> int:
    """Checks the run folder without touching it; returns the epoch to start from."""
    if resume:
        run.require_run()
        if run.state == "finished":
            raise RunFinishedError(
                f"{run.path}: this run already finished; there is nothing to resume, and its "
                f"{run.SUMMARY}, model and plans are left as they are. Start a new run with "
                "another run.name / run.dir to train again.")
        return run.finished_epochs()
    if run.state != "new":
        raise ConfigError(
            f"{run.path}: a run already exists there. Resume it with --resume {run.path}, or "
            "choose another run.name / run.dir."
        )
    run.check_claimable()
    return 0


def train(config: dict, *, resume: bool = False, extra_callbacks=(),
          extension: TrainingExtension | None = None) -> TrainResult:
    """Trains the config's model on its data with the paper's recipe.

    SGD with momentum, coupled weight decay on every weight, piecewise-constant
    learning rate per epoch, cross-entropy on logits / temperature. The run
    folder gets config.yaml, checkpoints/ (with initial.weights.h5, the
    weights at initialization), metrics.csv/json, tensorboard/, model.keras
    and summary.json.

    Args:
        config: A validated config (``tfprune.config.load_config``).
        resume: Continue the run in the config's run folder from its last finished epoch.
        extra_callbacks: More Keras callbacks for ``model.fit``.
        extension: A ``TrainingExtension`` adding callbacks, columns and summary entries.

    Returns:
        A ``TrainResult``.

    Raises:
        ConfigError: For a bad config or run folder, before any training.
        tfprune.data.DataError: For bad data, before any training.
    """
    run = RunFolder(run_folder(config))
    strategy = strategy_for(config)  # before TensorFlow runs anything (logical devices)
    if not is_chief(strategy):
        if resume:  # the chief's folder, read only; a new run's is the chief's to create
            _check_run_folder(run, resume)
        return _train_beside_the_chief(run, config, resume, extra_callbacks, extension, strategy)
    _check_run_folder(run, resume)  # before the lock: a refused folder is left untouched
    with run.lock("resume" if resume else "train"):
        return _train(run, config, resume, extra_callbacks, extension, strategy)


def _train_beside_the_chief(run: RunFolder, config: dict, resume: bool, extra_callbacks,
                            extension: TrainingExtension | None, strategy) -> TrainResult:
    """A multi-worker run on a worker other than the chief: its files go to a scratch folder.

    Every worker trains (``fit`` needs them all), but only the chief writes the
    run folder. As Keras' multi-worker guide prescribes, the others write their
    checkpoints, plans and logs to a temporary folder of their own and remove it at
    the end. A resumed worker starts from a copy of the chief's folder (its last
    checkpoint and plans), read and never written.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"tfprune-worker{worker_index(strategy)}-"))
    local = json.loads(json.dumps(config))
    local["run"]["dir"] = str(scratch / run.path.name)
    try:
        if resume:
            shutil.copytree(run.path, local["run"]["dir"], ignore=shutil.ignore_patterns(
                RunFolder.LOCK, RunFolder.CLAIM, RunFolder.TENSORBOARD))
        result = _train(RunFolder(local["run"]["dir"]), local, resume, extra_callbacks,
                        extension, strategy)
        return TrainResult(run.path, result.model, result.summary)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train(run: RunFolder, config: dict, resume: bool, extra_callbacks,
           extension: TrainingExtension | None, strategy) -> TrainResult:
    """``train``'s work, with the run folder's lock held.

    The model, its optimizer and metrics are made under ``strategy``'s scope;
    ``fit`` then runs its steps on the strategy's replicas by itself, and
    callbacks (scoring, masks) run in the cross-replica context, as Keras calls them.
    """
    run_dir = run.path
    start = _check_run_folder(run, resume)  # again under the lock: another process may have run
    extension = extension or TrainingExtension()
    with strategy.scope():
        model = run.load_checkpoint() if start else None  # a corrupted checkpoint fails first
        data = load_data(data_spec(config))
        if model is None:
            model = extension.initial_model(config, data)
        if model is None:
            model = build_model(config, data)
            compile_model(model, config)
    epochs = config["train"]["epochs"]
    extension.check(model, data)
    if not resume:
        run.create()
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        save_config(config, run.config)
        ensure_space(run.checkpoints, 2 * sum(w.numpy().nbytes for w in model.weights) + 2**20,
                     "the initial weights")  # h5py cannot fail cleanly on a full disk
        with atomic_path(run.initial_weights) as temporary:
            model.save_weights(temporary)
    callbacks = [
        keras.callbacks.LearningRateScheduler(lr_schedule(config)),
        AverageBatchNormAcrossWorkers(),
        *extension.callbacks(model, data, run_dir, start),
        MetricsLogger(run_dir, start, extension.columns), EpochCheckpoint(run_dir),
        keras.callbacks.TensorBoard(log_dir=str(run.tensorboard)),
        *extra_callbacks,
    ]
    started = time.perf_counter()
    if start < epochs:
        with strategy.scope():  # a wrapper (a distiller) and its variables: the strategy's too
            fitted = extension.fit_model(model, config)
        with fit_workarounds(fitted):
            fitted.fit(
                data.train_dataset(start, epochs), epochs=epochs, initial_epoch=start,
                steps_per_epoch=data.steps_per_epoch, validation_data=data.test_dataset(),
                callbacks=callbacks, shuffle=False,
                verbose=_verbosity(config["train"]["verbose"]),
            )
    seconds = time.perf_counter() - started
    return TrainResult(run_dir, model, _finish(run_dir, model, seconds, extension.summary(model)),
                       data)


def _finish(run_dir: Path, model: keras.Model, seconds: float, extras: dict) -> dict:
    """Saves the final model and summary.json."""
    run = RunFolder(run_dir)
    with atomic_path(run.model) as temporary:
        model.save(temporary)
    rows = run.read_metrics()
    summary = {
        "epochs": len(rows),
        "final_test_accuracy": rows[-1]["test_accuracy"],
        "best_test_accuracy": max(row["test_accuracy"] for row in rows),
        "best_epoch": max(rows, key=lambda row: row["test_accuracy"])["epoch"],
        "final_train_accuracy": rows[-1]["train_accuracy"],
        "params": int(model.count_params()),
        "seconds_this_session": round(seconds, 1),
        "cpu": machine_cpu(),
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "code_commit": code_commit(),
        **extras,
    }
    write_text(run.summary, json.dumps(summary, indent=1))
    return summary


def finished_run(run_dir: str | os.PathLike) -> TrainResult:
    """The ``TrainResult`` of a finished run folder, read back without changing it."""
    run = RunFolder(run_dir)
    return TrainResult(run.path, run.load_model(), run.read_summary())


def train_from_file(path: str | os.PathLike | None, overrides=None) -> TrainResult:
    """Loads a YAML config with ``section.key=value`` overrides and trains it."""
    return train(load_config(path, overrides))


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The config of an existing run folder, pointed at that folder (for resuming)."""
    run = RunFolder(run_dir)
    run.require_run()
    config = load_config(run.config)
    config["run"]["dir"] = str(run.path)
    return config


def resume_run(run_dir: str | os.PathLike) -> TrainResult:
    """Continues an interrupted run from its folder's config and last checkpoint."""
    if RunFolder(run_dir).plans.is_dir():
        raise ConfigError(f"{run_dir} is a prune run; resume it with tfprune prune --resume "
                          f"{run_dir}, which reinstalls its masks.")
    return train(read_run_config(run_dir), resume=True)
