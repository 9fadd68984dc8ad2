"""``PruningSchedule``: what ``PruningCallback`` asks a schedule, once per finished epoch.

tfprune's schedules count finished epochs, not optimizer steps, and answer
with the fraction of prunable channels removed in all (or a budget), not a
weight sparsity. Subclass this to write your own; ``RoundsSchedule`` and
``EarlyBirdSchedule`` (``tfprune.pruning.tfmot_schedules``) subclass both it and
tfmot's ``PruningSchedule``. This module does not import tfmot.
"""

from __future__ import annotations

import abc


class PruningSchedule(abc.ABC):
    """When to prune, and how much, counted in finished epochs.

    Attributes:
        target: The final target: a fraction of channels in [0, 1), or a
            budget dict (``{"flops": F}``).
        observes_masks: True for schedules that decide from how much the
            would-be masks still change (early-bird): the callback then scores
            after every epoch until the schedule prunes, and passes the change
            to ``observe``.

    Example:
        >>> class AtEpochs(tfprune.pruning.PruningSchedule):
        ...     def __init__(self, targets):            # {epoch: fraction removed}
        ...         self.targets, self.target = dict(targets), max(targets.values())
        ...     def decide(self, step):
        ...         return step in self.targets, self.targets.get(step, 0.0)
        ...     def get_config(self):
        ...         return {"targets": self.targets}
        >>> callback = PruningCallback("snip", AtEpochs({2: 0.3, 4: 0.6}), (x, y))
    """

    target = 0.0
    observes_masks = False

    @abc.abstractmethod
    def decide(self, step: int) -> tuple[bool, float | dict]:
        """``(prune now?, target in force after this round)`` after ``step`` finished epochs."""

    def observe(self, distance: float) -> None:
        """The fraction of would-be masks that changed since the last epoch (if observed)."""
        return None  # schedules that do not observe masks ignore it

    def reset(self) -> None:
        """Forgets any state: a new training run starts."""
        return None  # stateless schedules have nothing to forget

    @abc.abstractmethod
    def get_config(self) -> dict:
        """The constructor arguments (Keras convention)."""

    @classmethod
    def from_config(cls, config: dict):
        """Rebuilds the schedule from ``get_config()``."""
        return cls(**config)

    @property
    def last_epoch(self) -> int | None:
        """The latest epoch after which it may prune (None: unknown)."""
        return None
