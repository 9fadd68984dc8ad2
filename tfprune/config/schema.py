"""The config schema: every key, its type, default and allowed values."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfprune.budget_targets import parse_budget
from tfprune.graph.channels import GQA_MODES
from tfprune.pruning.axes import AXES
from tfprune.pruning.ranking import NORMALIZATIONS, REDUCTIONS, SCOPES, RankingOptions


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key.

    Attributes:
        default: The value used when the key is absent.
        types: Accepted Python types (int is accepted where float is).
        check: Returns True for an allowed value.
        allowed: Human-readable description of the allowed values.
        nullable: Whether ``null`` is allowed.
    """

    default: Any
    types: tuple[type, ...]
    check: Callable[[Any], bool] = lambda value: True
    allowed: str = ""
    nullable: bool = False


def _positive(value) -> bool:
    return value > 0


def _non_negative(value) -> bool:
    return value >= 0


def _budget(value: dict) -> bool:
    """A budget ``tfprune.budget_targets.parse_budget`` accepts."""
    try:
        parse_budget(value)
    except ValueError:
        return False
    return True


#: The ranking options' defaults.
_RANKING = RankingOptions()


def _choice(default, *choices) -> Field:
    return Field(default, (str,), lambda value: value in choices, "one of " + ", ".join(choices))


def _positive_list(value) -> bool:
    return len(value) > 0 and all(isinstance(v, int | float) and v > 0 for v in value)


#: section -> key -> Field. ``model.options`` passes extra keyword arguments to the builder.
SCHEMA: dict[str, dict[str, Field]] = {
    "model": {
        "name": Field("vgg13", (str,), allowed="a registered model name"),
        "width_multiplier": Field(1.0, (float,), _positive, "a number > 0"),
        "kernel_initializer": Field("torch_default", (str,), allowed="an initializer name"),
        "options": Field({}, (dict,), allowed="a mapping of extra builder arguments"),
    },
    "data": {
        "source": Field("cifar10", (str,), allowed="a tfds name, archive, folder or .zip"),
        "kind": _choice("auto", "auto", "tfds", "cifar_archive", "image_folder"),
        "batch_size": Field(128, (int,), _positive, "an integer > 0"),
        "augment": Field(True, (bool,), allowed="true or false"),
        "normalize": Field(True, (bool,), allowed="true or false"),
        "train_per_class": Field(None, (int,), _positive, "null or an integer > 0", True),
        "test_per_class": Field(None, (int,), _positive, "null or an integer > 0", True),
        "subset_seed": Field(0, (int,), _non_negative, "an integer >= 0 (seeds the subsets "
                             "alone; train.seed seeds the order and augmentation)"),
        "train_split": Field("train", (str,), allowed="a split or folder name"),
        "test_split": Field("test", (str,), allowed="a split or folder name"),
        "cache_dir": Field(None, (str,), allowed="null or a folder", nullable=True),
        "data_dir": Field(None, (str,), allowed="null or a folder", nullable=True),
    },
    "optimizer": {
        "momentum": Field(0.9, (float,), lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "nesterov": Field(False, (bool,), allowed="true or false"),
        "weight_decay": Field(1e-4, (float,), _non_negative, "a number >= 0"),
    },
    "train": {
        "epochs": Field(160, (int,), _positive, "an integer > 0"),
        "lr_values": Field([0.1, 0.01, 0.001], (list,), _positive_list,
                           "a non-empty list of numbers > 0"),
        "lr_phases": Field([80, 40, 40], (list,), _positive_list,
                           "a non-empty list of epoch counts > 0, as long as lr_values"),
        "temperature": Field(5.0, (float,), _positive, "a number > 0"),
        "seed": Field(0, (int,), _non_negative, "an integer >= 0"),
        "verbose": Field("auto", (str, int), lambda v: v in ("auto", 0, 1, 2),
                         "auto, 0, 1 or 2"),
    },
    "prune": {
        "measure": Field("magnitude", (str,), allowed="a registered importance measure"),
        "measure_options": Field({}, (dict,), allowed="a mapping, e.g. {temperature: 200}"),
        "target": Field(0.75, (float, dict), lambda v: _budget(v) if isinstance(v, dict)
                        else 0 <= v < 1, "a number in [0, 1) (the fraction of prunable "
                        "channels removed) or a budget {flops: F} / {params: P} / {latency_ms: L, "
                        "threads: n, ranking: flops or latency} / {tflite_kb: S}"),
        "schedule": _choice("rounds", "rounds", "early_bird"),
        "rounds": Field(1, (int,), _positive, "an integer > 0 (and <= train.epochs)"),
        "split": _choice("even", "even", "front_loaded"),
        "early_bird": Field({}, (dict,), allowed="{threshold, patience, max_epochs}"),
        "granularity": _choice("filter", "filter", "weight"),
        # the ranking options: names, defaults and choices from RankingOptions
        "scope": _choice(_RANKING.scope, *SCOPES),
        "min_keep": Field(_RANKING.min_keep, (float,), lambda v: 0 <= v <= 1,
                          "a number in [0, 1]"),
        "round_to": Field(_RANKING.round_to, (int,), _positive,
                          "an integer >= 1 (groups keep multiples of it)"),
        "reduction": _choice(_RANKING.reduction, *REDUCTIONS),
        "normalization": _choice(_RANKING.normalization, *NORMALIZATIONS),
        "num_samples": Field(2560, (int,), _positive, "an integer > 0"),
        "samples_per_class": Field(10, (int,), _positive, "an integer > 0"),
        "batchnorm": _choice("auto", "auto", "inference", "recalibrate"),
        "gqa": _choice(_RANKING.gqa, *GQA_MODES),
        "axes": Field(None, (list,), lambda v: bool(v) and set(v) <= set(AXES),
                      "null (every channel group) or a list of heads, mlp, hidden, depth",
                      nullable=True),
        "uniform": Field(_RANKING.uniform, (bool,), allowed="true or false (the same kept "
                         "count in every block, per kind of group)"),
        "ignored_layers": Field(list(_RANKING.ignored_layers), (list,),
                                allowed="a list of layer names"),
        "log_gradient_norms": Field(True, (bool,), allowed="true or false"),
        "reset_optimizer": Field(False, (bool,), allowed="true or false"),
    },
    "finetune": {
        "source": Field(None, (str,), allowed="null, or the trained model: a .keras file or a "
                        "tfprune run folder", nullable=True),
        "distill": Field(False, (bool,), allowed="true or false (keras.distillation from the "
                         "dense model)"),
        "temperature": Field(3.0, (float,), _positive, "a number > 0 (LogitsDistillation)"),
        "student_loss_weight": Field(0.5, (float,), lambda v: 0 <= v <= 1,
                                     "a number in [0, 1] (the rest goes to distillation)"),
    },
    "lm": {
        "text": Field(None, (str,), allowed="null, or a UTF-8 text file (paragraphs separated "
                      "by blank lines): finetune then prunes and recovers the causal LM of "
                      "finetune.source on it", nullable=True),
        "holdout_every": Field(10, (int,), lambda v: isinstance(v, int) and v >= 2,
                               "an integer >= 2 (every n-th paragraph held out)"),
        "batch_size": Field(16, (int,), _positive, "an integer > 0"),
        "steps_per_epoch": Field(50, (int,), _positive, "an integer > 0"),
        "learning_rate": Field(1e-3, (float,), _positive, "a number > 0 (AdamW)"),
    },
    "deploy": {
        "quantize": Field(["none", "int8"], (list,), lambda v: len(v) > 0 and all(
            q in ("none", "dynamic", "float16", "int8") for q in v),
            "a non-empty list of none, dynamic, float16, int8"),
        "verify_samples": Field(1000, (int,), _positive, "an integer > 0"),
        "representative_samples": Field(200, (int,), _positive, "an integer > 0"),
        "bench_repeats": Field(30, (int,), _positive, "an integer > 0"),
        "threads": Field([1, 2], (list,), lambda v: len(v) > 0 and all(
            isinstance(n, int) and n > 0 for n in v), "a non-empty list of integers > 0"),
    },
    "tune": {
        "measures": Field(["magnitude", "loss_preservation", "proposed", "grasp", "grasp_abs"],
                          (list,), lambda v: len(v) > 0 and all(isinstance(m, str) for m in v),
                          "a non-empty list of registered measure names"),
        "rounds": Field([1, 5], (list,), lambda v: len(v) > 0 and all(
            isinstance(r, int) and r > 0 for r in v), "a non-empty list of integers > 0"),
        "target_min": Field(0.5, (float,), lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "target_max": Field(0.9, (float,), lambda v: 0 <= v < 1, "a number in [0, 1)"),
        "target_step": Field(0.05, (float,), _positive, "a number > 0"),
        "grasp_temperatures": Field([1.0, 200.0], (list,), _positive_list,
                                    "a non-empty list of numbers > 0"),
        "algorithm": _choice("random", "random", "bayesian"),
        "max_trials": Field(10, (int,), _positive, "an integer > 0"),
        "max_params": Field(None, (int,), _positive, "null or an integer > 0", True),
        "max_flops": Field(None, (int,), _positive, "null or an integer > 0", True),
    },
    "run": {
        "dir": Field(None, (str,), allowed="null (runs/<name>) or a folder", nullable=True),
        "name": Field("run", (str,), lambda v: bool(v) and "/" not in v,
                      "a non-empty name without '/'"),
        "strategy": _choice("default", "default", "mirrored", "multi_worker", "tpu"),
        "devices": Field(None, (list,), lambda v: len(v) > 0 and all(
            isinstance(d, str) and d for d in v), "null (every GPU, or the CPU) or a list of "
            "device names for mirrored, e.g. [/gpu:0, /gpu:1]", nullable=True),
        "tpu": Field(None, (str,), allowed="null (the local TPU) or a TPU name or address",
                     nullable=True),
    },
}


def defaults() -> dict[str, dict[str, Any]]:
    """Returns a fresh nested dict of every default value."""
    return {
        section: {key: _copy(field.default) for key, field in fields.items()}
        for section, fields in SCHEMA.items()
    }


def _copy(value):
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) \
        else value
