"""Training with the paper's recipe: temperature loss, LR phases, run folders, resume."""

from tfprune.training.callbacks import EpochCheckpoint, MetricsLogger, finished_epochs
from tfprune.training.lm_distillation import TokenDistiller, distill_causal_lm, perplexity
from tfprune.training.loss import TemperatureCrossEntropy
from tfprune.training.lr_schedule import EpochPhaseSchedule, scale_phases
from tfprune.training.trainer import (
    RunFinishedError,
    TrainingExtension,
    TrainResult,
    build_model,
    compile_model,
    data_spec,
    finished_run,
    initial_weights_path,
    model_builder,
    read_run_config,
    resume_run,
    run_folder,
    train,
    train_from_file,
)

__all__ = [
    "EpochCheckpoint", "EpochPhaseSchedule", "MetricsLogger", "RunFinishedError",
    "TemperatureCrossEntropy", "TokenDistiller",
    "TrainResult", "TrainingExtension", "build_model", "compile_model", "data_spec",
    "distill_causal_lm", "finished_epochs", "finished_run", "initial_weights_path", "model_builder",
    "perplexity", "read_run_config", "resume_run",
    "run_folder", "scale_phases", "train", "train_from_file",
]
