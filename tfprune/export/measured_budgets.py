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
from tfprune.export.tflite import LiteRTError, export_tflite


@register_budget
@dataclasses.dataclass(frozen=True)
class LatencyBudget(MeasuredBudget):
    """``{"latency_ms": L, "threads": n}``: batch-1 LiteRT latency on this machine.

    The median of timed runs of the float .tflite in the LiteRT interpreter with
    ``threads`` threads; the search follows FLOPs between measurements.

    Attributes:
        threads: LiteRT threads (>= 1).
    """

    threads: int = 1
    kind: ClassVar[str] = "latency_ms"
    unit: ClassVar[str] = "ms"
    proxy: ClassVar[str] = "flops"
    aim: ClassVar[float] = 0.95

    def __post_init__(self):
        super().__post_init__()
        if (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                or self.threads < 1):
            raise ValueError(f"budget threads must be an integer >= 1, got {self.threads!r}.")

    def measure(self, model: keras.Model, repeats: int = 50) -> float:
        """The median batch-1 latency in ms of ``repeats`` runs after warm-up."""
        with tempfile.TemporaryDirectory() as scratch:
            path = export_tflite(model, Path(scratch) / "model.tflite")
            try:
                return litert_latency(path, self.threads, repeats).median_ms
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
