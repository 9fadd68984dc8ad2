"""Workflows over run folders and configs (the application layer above the core library).

``prune_run`` trains and prunes a config into a run folder, ``finetune`` fine-tunes a
finished run's slimmed model, ``model_sources`` opens a run folder or a model file for
``slim``, ``export``, ``bench`` and ``sensitivity``.
"""

from tfprune.workflows.model_sources import ModelSource, deployable_source, slim_run

__all__ = ["ModelSource", "deployable_source", "slim_run"]
