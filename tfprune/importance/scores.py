"""``ImportanceScores``: scores keyed by layer name, saved as ``.npz`` + ``.json``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tfprune.storage import read_pair, write_pair


class ScoringError(ValueError):
    """The model, its weights or the options cannot be scored as asked."""


class NonFiniteScoreError(ScoringError):
    """A measure produced NaN or Inf scores; pruning on them would be silent garbage."""


def check_finite(measure_name: str, layer_name: str, scores: np.ndarray) -> None:
    """Raises ``NonFiniteScoreError`` naming the layer if any score is NaN or Inf."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise NonFiniteScoreError(
            f"measure {measure_name!r} gave {int(bad.sum())} NaN/Inf scores of {bad.size} in "
            f"layer {layer_name!r}. The weights or gradients have diverged: check the data "
            "(normalized, finite), lower the learning rate, or raise the temperature."
        )


class UninformativeScoreError(ScoringError):
    """A layer's scores are all zero or all equal: a plan from them would be decided by ties."""


def check_informative(measure_name: str, layer_name: str, scores: np.ndarray) -> None:
    """Raises ``UninformativeScoreError`` naming the layer if its scores are all equal.

    One score (a one-channel layer) is always accepted.
    """
    values = np.ravel(scores)
    if values.size > 1 and np.all(values == values[0]):
        what = "exactly 0" if values[0] == 0 else f"all equal ({values[0]:.6g})"
        raise UninformativeScoreError(
            f"measure {measure_name!r} gave layer {layer_name!r} scores that are {what} "
            f"({values.size} of them), so any plan would be decided by ties. Likely causes: "
            "gradients that vanish (a loss that does not fit the model's output, BatchNorm "
            "statistics still at their initial values, a frozen or dead layer) or weights "
            "initialized to one constant. Score after some training, check the data and the "
            "model's output, or choose another measure."
        )


class ImportanceScores(dict):
    """A dict ``{layer_name: scores}`` that also records how the scores were made.

    Higher scores mean more important: the lowest are pruned first.

    Args:
        scores: ``{layer_name: numpy array}``: one score per filter (1-D) or per
            kernel element (the kernel's shape).
        measure: The measure's config, ``{"name": ..., **get_config()}``.
        granularity: ``"filter"`` or ``"weight"``.
        metadata: Anything else worth keeping (sample counts, seconds, ...).
    """

    def __init__(self, scores: dict, measure: dict, granularity: str, metadata=None):
        super().__init__(scores)
        self.measure = dict(measure)
        self.granularity = granularity
        self.metadata = dict(metadata or {})

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``path.npz`` (the arrays) and ``path.json`` (layer order and provenance).

        Returns:
            The path of the ``.npz`` file.
        """
        description = {"measure": self.measure, "granularity": self.granularity,
                       "metadata": self.metadata}
        return write_pair(path, {"layer": dict(self)}, description)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImportanceScores:
        """Reads scores written by ``save`` (give the ``.npz``, the ``.json`` or their stem)."""
        tables, description = read_pair(path, "scores")
        return cls(tables["layer"], description["measure"], description["granularity"],
                   description["metadata"])

    def summary_rows(self) -> list[dict]:
        """One row per layer: count, min, mean, max of its scores."""
        return [
            {"layer": name, "count": int(values.size), "min": float(values.min()),
             "mean": float(values.mean()), "max": float(values.max())}
            for name, values in self.items()
        ]

    def summary(self) -> str:
        """A plain-text table of ``summary_rows``."""
        rows = self.summary_rows()
        width = max([len("layer")] + [len(row["layer"]) for row in rows])
        lines = [f"{'layer':<{width}}  {'count':>8}  {'min':>11}  {'mean':>11}  {'max':>11}"]
        lines += [
            f"{r['layer']:<{width}}  {r['count']:>8}  {r['min']:>11.4g}  {r['mean']:>11.4g}  "
            f"{r['max']:>11.4g}" for r in rows
        ]
        return "\n".join(lines)
