"""When to prune and how much: tfmot ``PruningSchedule`` subclasses counted in epochs.

``step`` is the number of finished epochs. ``__call__(step)`` returns
``(should_prune, sparsity)``, sparsity being the cumulative fraction of
prunable filters removed once this round is done. Round k ends epoch k.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfprune.budget_targets import parse_budget
from tfprune.pruning.schedule_interface import PruningSchedule
from tfprune.pruning.tfmot_import import import_tfmot

TfmotPruningSchedule = import_tfmot().sparsity.keras.PruningSchedule

SPLITS = ("even", "front_loaded")


def _check_target(target):
    """A fraction in [0, 1), or a budget dict (``tfprune.budget_targets.parse_budget``)."""
    if isinstance(target, dict):
        return parse_budget(target).with_value(parse_budget(target).value)
    if not 0 <= float(target) < 1:
        raise ValueError(f"target must be in [0, 1), got {target}: the fraction removed.")
    return float(target)


def _check_fraction(target) -> float:
    if isinstance(target, dict):
        raise ValueError(f"EarlyBirdSchedule takes a fraction target, not a budget {target!r}; "
                         "use RoundsSchedule for budgets.")
    return _check_target(target)


class _EpochSchedule(TfmotPruningSchedule, PruningSchedule):
    """Shared plumbing: Keras-style config and Python-or-tensor steps."""

    def get_config(self) -> dict:
        """Constructor arguments (Keras convention)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict):
        """Accepts the Keras form (kwargs) and tfmot's ``{"class_name", "config"}`` form."""
        if "config" in config and "class_name" in config:
            config = config["config"]
        return cls(**config)

    def __call__(self, step):
        """Returns ``(should_prune, sparsity)`` as tensors for ``step`` finished epochs."""
        should, sparsity = self.decide(int(step))
        return tf.constant(should), tf.constant(sparsity, tf.float32)


@keras.saving.register_keras_serializable(package="tfprune")
class RoundsSchedule(_EpochSchedule):
    """Prune in ``rounds`` rounds, one per epoch, to ``target`` in total.

    Args:
        target: The fraction of prunable filters removed after the last round,
            or a budget the model must fit after it: ``{"flops": F}`` or
            ``{"params": P}``. Round k of N then asks for the budget k / N of
            the way from the unpruned model's cost (``progress``).
        rounds: N; 1 is one-shot pruning.
        split: ``"even"``: round k brings the total to k * target / N (the
            paper's text). ``"front_loaded"``: round k removes
            target / (k * target + N * (1 - target)) of the filters still
            present, as the reference code does; both end at ``target``.
        start: Finished epochs before round 1: 1 (default) prunes after the
            first epoch (early in training, the paper); 0 prunes before any
            training (a trained model, then fine-tuned). Round k follows
            epoch ``start + k - 1``.
    """

    def __init__(self, target: float, rounds: int = 1, split: str = "even", start: int = 1):
        self.target = _check_target(target)
        if int(rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}.")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}.")
        self.rounds = int(rounds)
        self.split = split
        if int(start) not in (0, 1):
            raise ValueError(f"start must be 0 (before training) or 1, got {start}.")
        self.start = int(start)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"target": self.target, "rounds": self.rounds, "split": self.split,
                "start": self.start}

    @property
    def budget(self) -> dict | None:
        """The budget target, or None for a fraction."""
        return self.target if isinstance(self.target, dict) else None

    def progress(self, step: int) -> float:
        """How far toward the budget the round after epoch ``step`` goes (k / N)."""
        return min(max(self._round(step), 0), self.rounds) / self.rounds

    def _round(self, step: int) -> int:
        """The round that follows ``step`` finished epochs (< 1: none yet)."""
        return step - self.start + 1

    def sparsity_after(self, round_index: int) -> float:
        """The cumulative fraction removed after round ``round_index`` (1-based)."""
        k, n, p = round_index, self.rounds, self.target
        if self.budget is not None:
            return self.progress(k)
        if self.split == "even":
            return k * p / n
        return 1 - n * (1 - p) / (k * p + n * (1 - p))

    def decide(self, step: int) -> tuple[bool, float]:
        """``(prune after epoch `step`?, cumulative fraction)`` in Python values."""
        k = self._round(step)
        if k < 1:
            return False, 0.0
        return k <= self.rounds, self.sparsity_after(min(k, self.rounds))

    @property
    def last_epoch(self) -> int:
        """The epoch after which the last round prunes."""
        return self.start + self.rounds - 1


@keras.saving.register_keras_serializable(package="tfprune")
class EarlyBirdSchedule(_EpochSchedule):
    """Prune once, when the masks stop changing (early-bird tickets, You et al. 2020).

    After each epoch the callback reports the normalized Hamming distance
    between the masks that pruning ``target`` would give now and one epoch
    earlier (``observe``). Once it has stayed below ``threshold`` for
    ``patience`` epochs in a row, the schedule prunes to ``target`` in one shot.

    Args:
        target: The fraction of prunable filters removed.
        threshold: Mask distance below which the masks count as settled.
        patience: Consecutive settled epochs needed.
        max_epochs: Prune at this epoch at the latest.
    """

    observes_masks = True

    def __init__(self, target: float, threshold: float = 0.1, patience: int = 5,
                 max_epochs: int = 30):
        self.target = _check_fraction(target)
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.max_epochs = int(max_epochs)
        if self.patience < 1 or self.max_epochs < 1:
            raise ValueError("patience and max_epochs must be >= 1.")
        self.reset()

    def reset(self) -> None:
        """Forgets the observed distances and whether it has pruned (a new training run)."""
        self.distances: list[float] = []
        self.pruned_at: int | None = None

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {"target": self.target, "threshold": self.threshold,
                "patience": self.patience, "max_epochs": self.max_epochs}

    def observe(self, distance: float) -> None:
        """Records the mask distance measured at the end of the latest epoch."""
        self.distances.append(float(distance))

    def settled(self) -> bool:
        """Whether the last ``patience`` distances are all below the threshold."""
        recent = self.distances[-self.patience:]
        return len(recent) == self.patience and all(d < self.threshold for d in recent)

    def decide(self, step: int) -> tuple[bool, float]:
        """Prunes once: at the first settled epoch, or at ``max_epochs``."""
        if self.pruned_at is not None:
            return False, self.target
        if step >= 1 and (self.settled() or step >= self.max_epochs):
            self.pruned_at = step
            return True, self.target
        return False, 0.0

    @property
    def last_epoch(self) -> int:
        """The latest epoch it may prune after."""
        return self.max_epochs
