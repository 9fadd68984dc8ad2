"""The measured budgets: LiteRT latency and .tflite file size of a (slimmed) model.

Registered under ``latency_ms`` and ``tflite_kb`` (``tfprune.budget_targets``);
``tfprune.pruning.measured`` searches plans under them through their counted
proxies.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import ClassVar

import keras

from tfprune.budget_targets import MeasuredBudget, register_budget
from tfprune.export.latency import litert_latency
from tfprune.export.latency_model import measure_latency_table
from tfprune.export.tflite import LiteRTError, export_tflite
from tfprune.pruning.latency_cost import KeepLatency

#: ``LatencyBudget(ranking=...)`` choices.
RANKINGS = ("flops", "latency")

#: LiteRT interpreters each latency measurement times (the quickest median counts).
INTERPRETERS = 3


@register_budget
@dataclasses.dataclass(frozen=True)
class LatencyBudget(MeasuredBudget):
    """``{"latency_ms": L, "threads": n, "ranking": r}``: batch-1 LiteRT latency on this machine.

    The median of timed runs of the float .tflite in the LiteRT interpreter with
    ``threads`` threads. Between measurements the search follows a prediction:
    ``ranking="flops"`` (default) removes channels by score per FLOP saved;
    ``ranking="latency"`` times each layer alone in LiteRT at a few channel
    counts (``tfprune.export.latency_model``, cached per machine) and solves a
    knapsack over the predicted milliseconds (``tfprune.pruning.knapsack``).

    Attributes:
        threads: LiteRT threads (>= 1).
        ranking: ``"flops"`` or ``"latency"``.
    """

    threads: int = 1
    ranking: str = dataclasses.field(default="flops", metadata={"omit_default": True})
    kind: ClassVar[str] = "latency_ms"
    unit: ClassVar[str] = "ms"
    proxy: ClassVar[str] = "flops"
    aim: ClassVar[float] = 0.95
    confirm: ClassVar[bool] = True

    def __post_init__(self):
        super().__post_init__()
        if (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                or self.threads < 1):
            raise ValueError(f"budget threads must be an integer >= 1, got {self.threads!r}.")
        if self.ranking not in RANKINGS:
            raise ValueError(f"budget ranking must be one of {list(RANKINGS)}, got "
                             f"{self.ranking!r}.")

    def ranking_cost(self, model, graph, round_to: int = 1, progress=None):
        """With ``ranking="latency"``: the predicted latency of keep-masks, per layer."""
        if self.ranking == "flops":
            return None
        table = measure_latency_table(model, graph, threads=self.threads, round_to=round_to,
                                      progress=progress)
        return KeepLatency(graph, table)

    def measure(self, model: keras.Model, repeats: int = 50) -> float:
        """Batch-1 latency in ms: the quickest of ``INTERPRETERS`` medians of ``repeats`` runs.

        Each median is timed in its own LiteRT interpreter after warm-up. Medians
        of separate interpreters of the same file spread by a few percent on a
        busy machine; the quickest of three is what the benchmarks re-measure,
        so a plan the search accepts does not land over the budget by that
        spread when it is timed again.
        """
        with tempfile.TemporaryDirectory() as scratch:
            path = export_tflite(model, Path(scratch) / "model.tflite")
            try:
                return min(litert_latency(path, self.threads, repeats).median_ms
                           for _ in range(INTERPRETERS))
            except LiteRTError as error:
                raise ValueError(f"the budget {self.kind} is measured in LiteRT, and the "
                                 f"slimmed model cannot run there: {error.reason}") from None


@register_budget
@dataclasses.dataclass(frozen=True)
class TFLiteSizeBudget(MeasuredBudget):
    """``{"tflite_kb": S}``: the float .tflite file's size in KiB (exact; follows params)."""

    kind: ClassVar[str] = "tflite_kb"
    unit: ClassVar[str] = "KiB"
    proxy: ClassVar[str] = "params"
    aim: ClassVar[float] = 0.99

    def measure(self, model: keras.Model, repeats: int = 50) -> float:
        """The float .tflite file's size in KiB (``repeats`` is unused: sizes are exact)."""
        with tempfile.TemporaryDirectory() as scratch:
            return export_tflite(model, Path(scratch) / "model.tflite").stat().st_size / 1024
