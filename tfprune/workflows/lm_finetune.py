"""``tfprune finetune`` for a causal language model: prune it, then recover it by distillation.

With ``lm.text`` set, ``tfprune finetune CONFIG`` reads ``finetune.source`` as
a saved keras-hub causal LM (``GemmaCausalLM.save("dense.keras")``, its
preprocessor inside) and ``lm.text`` as a UTF-8 text file: paragraphs
separated by blank lines, every ``lm.holdout_every``-th held out. Then:

1. it scores the model with ``prune.measure`` on up to ``prune.num_samples``
   training paragraphs (through the model's preprocessor: next-token
   cross-entropy, padding masked), makes the plan of the ``prune`` section
   (``target``, ``axes`` with ``depth``, ``uniform``, ``gqa``, ``scope``...),
   saves it in ``plans/`` and slims the model (its own class for a uniform
   plan);
2. it recovers the slimmed model (the student) for ``train.epochs`` epochs of
   ``lm.steps_per_epoch`` batches: with ``finetune.distill: true`` by logit
   distillation from the dense model (``tfprune.distill_causal_lm``:
   ``keras.distillation``, ``finetune.temperature``, and
   ``finetune.student_loss_weight`` on the labels), else on the labels alone;
3. after each epoch it records the held-out perplexity in ``metrics.json``
   and checkpoints the student; at the end it writes ``model.keras`` and
   ``summary.json`` (perplexity dense, pruned and recovered, parameters,
   the plan).

Each epoch draws its batches from ``(train.seed, epoch)`` alone, so ``--resume
RUN_DIR`` after an interruption continues from the last finished epoch with
the batches the run would have had; the optimizer (``AdamW(lm.learning_rate)``)
starts afresh there. A finished run is never rewritten.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.atomic import atomic_path, write_json
from tfprune.config import ConfigError, save_config
from tfprune.model_files import load_model_file
from tfprune.run_folder import RunFolder


@dataclasses.dataclass
class LMFinetuneResult:
    """A finished language-model fine-tuning run.

    Attributes:
        run_dir: The run folder.
        model: The recovered (student) model.
        summary: The contents of ``summary.json``.
    """

    run_dir: Path
    model: keras.Model
    summary: dict


def paragraphs(path: str | Path, holdout_every: int) -> tuple[list[str], list[str]]:
    """``(training, held-out)`` paragraphs of a text file (blank-line separated).

    Raises:
        ConfigError: For a missing or unreadable file, or too few paragraphs
            to hold one out.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"lm.text: cannot read {path} as UTF-8 text ({error}).") from None
    found = [" ".join(block.split()) for block in text.split("\n\n")]
    found = [block for block in found if block]
    held = found[::holdout_every]
    train = [block for index, block in enumerate(found) if index % holdout_every]
    if len(train) < 2 or not held:
        raise ConfigError(f"lm.text: {path} has {len(found)} paragraphs (separated by blank "
                          f"lines); with lm.holdout_every={holdout_every} that leaves "
                          f"{len(train)} to train on and {len(held)} held out.")
    return train, held


def _source_model(config: dict) -> keras.Model:
    """The dense causal LM of ``finetune.source``, checked to be one with a preprocessor."""
    import keras_hub  # noqa: F401 - registers keras-hub's classes for loading

    source = config["finetune"]["source"]
    if not source or not str(source).endswith(".keras") or not Path(source).is_file():
        raise ConfigError(f"finetune.source: {source!r} is not a .keras file; with lm.text "
                          "it is a saved keras-hub causal LM (CausalLM.save(path)).")
    model = load_model_file(source, what="finetune.source")
    if not isinstance(model, keras_hub.models.CausalLM) or model.preprocessor is None:
        raise ConfigError(f"finetune.source: {source} holds a {type(model).__name__}; with "
                          "lm.text it must be a keras-hub CausalLM saved with its preprocessor.")
    return model


def _batches(texts: list[str], preprocessor, batch_size: int, seed: int, epochs: range,
             steps: int) -> tf.data.Dataset:
    """The batches of ``epochs``, each epoch's texts drawn by ``(seed, epoch)`` alone.

    An epoch takes ``steps`` batches of shuffled passes over the texts, so a
    run resumed at epoch ``k`` gets the batches it would have had.
    """
    order = []
    for epoch in epochs:
        rng, drawn = np.random.default_rng([seed, epoch]), []
        while len(drawn) < steps * batch_size:
            drawn += [texts[i] for i in rng.permutation(len(texts))]
        order += drawn[:steps * batch_size]
    return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(preprocessor)


class _EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: held-out perplexity into ``metrics.json``, the student checkpointed."""

    def __init__(self, run: RunFolder, student, held_data, metrics: list, start: int,
                 verbose: int):
        super().__init__()
        self.run, self.student, self.held_data = run, student, held_data
        self.metrics, self.start, self.verbose = metrics, start, verbose
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from tfprune.training.lm_distillation import perplexity

        done = self.start + epoch + 1
        self.metrics.append({"epoch": done, "loss": float((logs or {}).get("total_loss", 0.0)),
                             "held_out_perplexity": perplexity(self.student, self.held_data),
                             "seconds": round(time.perf_counter() - self.started, 1)})
        self.started = time.perf_counter()
        if self.verbose:
            print(f"epoch {done}: held-out perplexity "
                  f"{self.metrics[-1]['held_out_perplexity']:.2f}", flush=True)
        path = self.run.checkpoint_path(done)
        with atomic_path(path) as scratch:
            self.student.save(scratch)
        write_json(self.run.metrics_json, self.metrics)
        self.run.commit_checkpoint(done, path)


def _held_out(texts: list[str], preprocessor, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(texts).batch(batch_size).map(preprocessor)


def _check_folder(run: RunFolder, resume: bool) -> None:
    from tfprune.training import RunFinishedError

    if resume:
        run.require_run()
        if run.state == "finished":
            raise RunFinishedError(f"{run.path}: this run already finished; its summary, model "
                                   "and plan are left as they are.")
    elif run.is_run:
        raise ConfigError(f"{run.path}: a run already exists there. Resume it with --resume "
                          f"{run.path}, or choose another run.name / run.dir.")
    else:
        run.check_claimable()


def _plan(teacher: keras.Model, train: list[str], config: dict):
    """The plan of the ``prune`` section, scored on the training paragraphs."""
    import tfprune
    from tfprune.pruning.ranking import RankingOptions

    section = config["prune"]
    measure = {"name": section["measure"], **section["measure_options"]}
    data = tf.data.Dataset.from_tensor_slices(train).batch(config["lm"]["batch_size"])
    scores = tfprune.score(teacher, measure, data, num_samples=section["num_samples"],
                           samples_per_class=section["samples_per_class"],
                           batch_size=config["lm"]["batch_size"], seed=config["train"]["seed"])
    ranking = RankingOptions.from_mapping(section)
    block_scores = None
    if ranking.axes is not None and "depth" in ranking.axes:
        block_scores = tfprune.block_importance(teacher, data, num_samples=section["num_samples"])
    return tfprune.make_plan(teacher, scores, section["target"], ranking=ranking,
                             block_scores=block_scores)


def finetune_lm(config: dict, *, resume: bool = False, verbose: int = 1) -> LMFinetuneResult:
    """Prunes ``finetune.source`` and recovers it on ``lm.text`` (module docstring).

    Raises:
        ConfigError: For a bad source, text or run folder, before any work.
        tfprune.pruning.PlanError: For a plan the model cannot take, before training.
    """
    import tfprune
    from tfprune.training import run_folder
    from tfprune.training.lm_distillation import distill_causal_lm, perplexity

    section, lm = config["finetune"], config["lm"]
    run = RunFolder(run_folder(config))
    _check_folder(run, resume)
    train, held = paragraphs(lm["text"], lm["holdout_every"])
    teacher = _source_model(config)
    preprocessor = teacher.preprocessor
    held_data = _held_out(held, preprocessor, lm["batch_size"])
    with run.lock("resume" if resume else "finetune"):
        _check_folder(run, resume)  # again: another process may have run while the model loaded
        if not resume:
            run.create()
            save_config(config, run.config)
        stored = run.plans / "epoch_0"
        if stored.with_suffix(".json").is_file():
            plan = tfprune.PruningPlan.load(stored)
        else:  # a new run, or one stopped before its plan was saved
            plan = _plan(teacher, train, config)
            run.plans.mkdir(parents=True, exist_ok=True)
            plan.save(stored)
        start = run.finished_epochs() if resume else 0
        if start:
            run.verify_checkpoint()
            student = load_model_file(run.last_checkpoint, what="the last checkpoint")
            metrics = run.read_metrics()
        else:
            student, metrics = tfprune.slim(teacher, plan), []
        run.checkpoints.mkdir(parents=True, exist_ok=True)
        dense = _cached(run, "perplexity_dense", lambda: perplexity(teacher, held_data))
        pruned = _cached(run, "perplexity_pruned", lambda: perplexity(student, held_data))
        weight = section["student_loss_weight"] if section["distill"] else 1.0
        epochs = config["train"]["epochs"]
        if start < epochs:
            checkpoint = _EpochCheckpoint(run, student, held_data, metrics, start, verbose)
            distill_causal_lm(
                student, teacher,
                _batches(train, preprocessor, lm["batch_size"], config["train"]["seed"],
                         range(start, epochs), lm["steps_per_epoch"]),
                epochs=epochs - start, steps_per_epoch=lm["steps_per_epoch"],
                temperature=section["temperature"], student_loss_weight=weight,
                optimizer=keras.optimizers.AdamW(lm["learning_rate"]),
                callbacks=[checkpoint], verbose=verbose)
        summary = _summary(config, teacher, student, plan, dense, pruned, metrics)
        with atomic_path(run.model) as scratch:
            student.save(scratch)
        write_json(run.summary, summary)
    return LMFinetuneResult(run.path, student, summary)


def _cached(run: RunFolder, key: str, compute) -> float:
    """A value kept in ``checkpoints/lm.json`` so a resumed run reports the first one."""
    path = run.checkpoints / "lm.json"
    values = json.loads(path.read_text()) if path.is_file() else {}
    if key not in values:
        values[key] = compute()
        write_json(path, values)
    return float(values[key])


def _summary(config, teacher, student, plan, dense, pruned, metrics) -> dict:
    backbone = getattr(student, "backbone", None)
    sizes = {} if backbone is None else {
        key: value for key, value in backbone.get_config().items()
        if key in ("num_layers", "num_query_heads", "num_key_value_heads", "hidden_dim",
                   "intermediate_dim")}
    return {"kind": "causal_lm", "finetune_source": str(config["finetune"]["source"]),
            "distilled": bool(config["finetune"]["distill"]),
            "student_class": type(student).__name__, "student_config": sizes,
            "params_before": int(teacher.count_params()),
            "params_after": int(student.count_params()),
            "fraction_removed": plan.fraction_removed, "removed_blocks": plan.removed_blocks,
            "perplexity_dense": dense, "perplexity_pruned": pruned,
            "perplexity_final": metrics[-1]["held_out_perplexity"] if metrics else pruned,
            "epochs": len(metrics)}


def lm_report(summary: dict) -> str:
    """The summary's lines for ``tfprune finetune`` of a language model."""
    way = "distilled from the dense model" if summary["distilled"] else "on the labels alone"
    return (f"{summary['student_class']} {summary['student_config']}: params "
            f"{summary['params_before']:,} -> {summary['params_after']:,}; held-out perplexity "
            f"dense {summary['perplexity_dense']:.2f}, pruned {summary['perplexity_pruned']:.2f},"
            f" after {summary['epochs']} epochs {way} {summary['perplexity_final']:.2f}")
