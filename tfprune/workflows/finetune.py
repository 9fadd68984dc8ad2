"""Pruning a trained model, then fine-tuning it, optionally distilled from the dense model.

``tfprune finetune CONFIG`` loads the trained model named by
``finetune.source`` (a .keras file or a tfprune run folder), prunes it by the
``prune`` section (``prune.rounds`` rounds: round 1 before the first epoch,
one-shot when ``rounds`` is 1, then one after each of the next epochs; any
target: a fraction, a FLOPs / parameter / latency / file-size budget), and
trains it for ``train.epochs`` with the ``train`` and ``optimizer`` sections,
masks enforced. With ``finetune.distill: true`` the pruned model (the
student) learns from the labels and from the dense model (the frozen
teacher) through Keras' own ``keras.distillation.Distiller`` with
``LogitsDistillation(temperature)``, ``student_loss_weight`` weighing the
label loss. Both models must output logits (the builders do). With the
paper's training loss, ``TemperatureCrossEntropy(T)``, the logits are T times
the usual scale, so the distillation temperature is ``T x
finetune.temperature`` and the distillation loss is weighed by ``1 / T^2``
(Hinton's ``temperature^2`` factor in the logits' own units); without it, a
teacher trained at T = 5 distilled at 3 gives near one-hot soft targets whose
clipped KL divergence even goes negative. The run
folder is that of ``tfprune prune``; the student is what is checkpointed,
resumed and saved. With ``lm.text`` set, the source is a keras-hub causal
language model, pruned and recovered on that text instead
(``tfprune.workflows.lm_finetune``).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from tfprune.config import ConfigError, load_config
from tfprune.losses import training_temperature
from tfprune.model_files import load_model_file
from tfprune.pruning.tfmot_schedules import RoundsSchedule
from tfprune.run_folder import RunFolder
from tfprune.training import compile_model, read_run_config, train
from tfprune.workflows.prune_run import PruneExtension


def source_path(config: dict) -> Path:
    """The trained model ``finetune.source`` names (a run folder's final model, or a file)."""
    source = config["finetune"]["source"]
    if not source:
        raise ConfigError("finetune.source: name the trained model to prune (a .keras file "
                          "or a tfprune run folder).")
    path = Path(source)
    if path.is_dir():
        return RunFolder(path).model
    if path.suffix != ".keras" or not path.is_file():
        raise ConfigError(f"finetune.source: {path} is not a .keras file or a run folder.")
    return path


def _load(path: Path) -> keras.Model:
    return load_model_file(path, what="finetune.source")


class FinetuneExtension(PruneExtension):
    """Starts from a trained model, prunes before training, optionally distils.

    Args:
        config: A validated config with ``finetune`` and ``prune`` sections.

    Raises:
        ConfigError: For a missing source, an early-bird schedule, or rounds
            beyond ``train.epochs``.
    """

    def __init__(self, config: dict):
        if config["prune"]["schedule"] != "rounds":
            raise ConfigError("prune.schedule: fine-tuning prunes in rounds from the first "
                              "epoch; early_bird is for training from scratch.")
        super().__init__(config)
        section = config["prune"]
        self.schedule = RoundsSchedule(section["target"], section["rounds"], section["split"],
                                       start=0)
        if self.schedule.last_epoch >= config["train"]["epochs"]:
            raise ConfigError(f"prune.rounds: {section['rounds']} rounds need "
                              f"train.epochs > {self.schedule.last_epoch}.")
        self.source = source_path(config)

    def initial_model(self, config: dict, data) -> keras.Model:
        """The trained model, compiled with the config's optimizer and loss."""
        model = _load(self.source)
        shape = tuple(model.inputs[0].shape[1:])
        if shape != tuple(data.input_shape) or int(model.outputs[0].shape[-1]) != \
                data.num_classes:
            raise ConfigError(f"finetune.source: {self.source} takes {shape} and outputs "
                              f"{model.outputs[0].shape[-1]} classes; the data has "
                              f"{tuple(data.input_shape)} images of {data.num_classes} "
                              "classes.")
        compile_model(model, config)
        return model

    def fit_model(self, model: keras.Model, config: dict) -> keras.Model:
        """A Distiller around ``model`` (sharing its optimizer) when distilling, else it."""
        section = config["finetune"]
        if not section["distill"]:
            return model
        teacher = _load(self.source)
        teacher.trainable = False
        # Logits trained with TemperatureCrossEntropy(T) are T times the usual scale: the
        # distillation temperature counts from there, and its T^2 factor is scaled back.
        scale = training_temperature(model)
        distiller = keras.distillation.Distiller(
            teacher=teacher, student=model,
            # A KLDivergence object, not the default string: Keras 3.15 resolves
            # "kl_divergence" to the function, which LogitsDistillation then applies to the
            # scaled logits instead of their softmax (a negative "divergence").
            # In a list: a single loss gets weight 1 whatever distillation_loss_weights says.
            distillation_losses=[keras.distillation.LogitsDistillation(
                temperature=scale * section["temperature"], loss=keras.losses.KLDivergence())],
            distillation_loss_weights=[1.0 / scale ** 2],
            student_loss_weight=section["student_loss_weight"])
        distiller.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
        return distiller

    def summary(self, model) -> dict:
        """The pruning summary plus where the model came from and whether it was distilled."""
        section = self.config["finetune"]
        return {**super().summary(model), "finetune_source": str(self.source),
                "distilled": bool(section["distill"])}


def finetune(config: dict, *, resume: bool = False):
    """Prunes ``finetune.source`` and fine-tunes it (see the module docstring).

    With ``lm.text`` set, the source is a causal language model, pruned and
    recovered on that text (``tfprune.workflows.lm_finetune``).
    """
    if config["lm"]["text"]:
        from tfprune.workflows.lm_finetune import finetune_lm

        return finetune_lm(config, resume=resume)
    return train(config, resume=resume, extension=FinetuneExtension(config))


def finetune_from_file(path: str | os.PathLike | None, overrides=None):
    """Loads a YAML config with ``section.key=value`` overrides and runs ``finetune``."""
    return finetune(load_config(path, overrides))


def resume_finetune(run_dir: str | os.PathLike):
    """Continues an interrupted fine-tuning run (masks, optimizer state and all)."""
    return finetune(read_run_config(run_dir), resume=True)
