"""Piecewise-constant learning rate per epoch, with phases scaled to any epoch budget."""

from __future__ import annotations

from collections.abc import Sequence


def scale_phases(phases: Sequence[int], epochs: int) -> list[int]:
    """Scales phase lengths proportionally so that they sum to ``epochs``.

    Boundaries are the rounded cumulative fractions, so (80, 40, 40) becomes
    (80, 40, 40) for 160 epochs, (10, 5, 5) for 20 and (2, 1, 1) for 4. A
    phase may become empty when ``epochs`` is smaller than the number of phases.

    Args:
        phases: Positive epoch counts of the phases.
        epochs: The total epochs (> 0).

    Returns:
        Integer phase lengths summing to ``epochs``.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    total = sum(phases)
    boundaries, cumulative = [], 0
    for length in phases:
        cumulative += length
        boundaries.append(int(round(epochs * cumulative / total)))
    starts = [0, *boundaries[:-1]]
    return [end - start for start, end in zip(starts, boundaries, strict=True)]


class EpochPhaseSchedule:
    """Maps an epoch index to the learning rate of its phase.

    Args:
        values: Learning rate of each phase, e.g. (0.1, 0.01, 0.001).
        phases: Epochs in each phase, e.g. (80, 40, 40). Epochs past the last
            phase keep the last rate.

    Example:
        >>> schedule = EpochPhaseSchedule([0.1, 0.01], [2, 1])
        >>> [schedule(epoch) for epoch in range(4)]
        [0.1, 0.1, 0.01, 0.01]
    """

    def __init__(self, values: Sequence[float], phases: Sequence[int]):
        if len(values) != len(phases) or not values:
            raise ValueError(
                f"need one learning rate per phase, got {len(values)} rates and {len(phases)} "
                "phases."
            )
        self.values = [float(v) for v in values]
        self.phases = [int(p) for p in phases]

    def __call__(self, epoch: int, current_lr: float | None = None) -> float:
        """Returns the learning rate of ``epoch`` (0-based); signature of LearningRateScheduler."""
        end = 0
        for value, length in zip(self.values, self.phases, strict=True):
            end += length
            if epoch < end:
                return value
        return self.values[-1]
