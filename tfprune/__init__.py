"""tfprune: structured pruning early in training for Keras 3 / TensorFlow.

Subpackages (imported on first use):
``tfprune.models`` (builders), ``tfprune.data`` (pipelines), ``tfprune.config``
(YAML configs), ``tfprune.training`` (the paper's training recipe),
``tfprune.importance`` (importance measures), ``tfprune.graph`` (the channel
graph, analysed once per model), ``tfprune.plans`` (``PruningPlan``),
``tfprune.pruning`` (targets, ranking, plans, costs, masks, schedules,
callback), ``tfprune.slimming`` (physically
smaller models), ``tfprune.export`` (TFLite / LiteRT export, verification,
latency), ``tfprune.workflows`` (run folders and configs: prune, fine-tune)
and ``tfprune.pipeline`` (prune, slim, export and time, end to end).
``tfprune.score``, ``tfprune.Pruner``, ``tfprune.channel_groups``, ``tfprune.make_plan``,
``tfprune.apply_plan``, ``tfprune.PruningPlan``, ``tfprune.slim``,
``tfprune.run_pipeline``, ``tfprune.register_layer_handler`` (``tfprune.handlers``:
what tfprune knows about each layer type) and ``tfprune.check_model``
(``tfprune.check``: a model end to end) are shortcuts to those.

Importing tfprune registers the Keras objects its saved models refer to
(``tfprune.keras_objects``, ``tfprune.losses``), so ``keras.saving.load_model``
reads a pruned run's ``model.keras`` after ``import tfprune``; everything else
is imported on first use.
"""

import importlib

from tfprune import keras_objects, losses  # noqa: F401 - registers saved models' Keras objects

__version__ = "0.1.0"

_SUBPACKAGES = ("check", "config", "data", "export", "graph", "handlers", "importance",
                "inspection", "models", "pipeline", "plans", "pruning", "slimming", "training",
                "workflows")

#: Top-level functions -> the subpackage defining them.
_FUNCTIONS = {"score": "importance", "channel_groups": "pruning", "make_plan": "pruning",
              "apply_plan": "pruning", "PruningPlan": "pruning", "slim": "slimming",
              "run_pipeline": "pipeline", "register_layer_handler": "handlers",
              "check_model": "check", "ScoreMonitor": "analysis", "Pruner": "pruning",
              "drop_blocks": "slimming", "block_importance": "importance",
              "distill_causal_lm": "training", "perplexity": "training"}


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tfprune.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"tfprune.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module 'tfprune' has no attribute {name!r}")
