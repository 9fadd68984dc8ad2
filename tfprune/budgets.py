"""Budget targets, checked in one place for ``make_plan``, schedules and configs.

A budget is a dict with one cost and its limit:

- ``{"flops": F}``: FLOPs as ``summary.json`` counts them (2 x multiply-accumulates);
- ``{"params": P}``: parameters;
- ``{"latency_ms": L}`` (optionally ``"threads": n``, default 1): the slimmed
  model's float .tflite measured in the LiteRT interpreter at batch 1 on this
  machine;
- ``{"tflite_kb": S}``: the slimmed model's float .tflite file size in KiB.

The first two are counted; the last two are measured (``tfprune.pruning.measured``).
"""

from __future__ import annotations

import dataclasses

#: Counted budget kinds (exact, from the channel analysis).
COUNTED = ("flops", "params")
#: Measured budget kinds (export to .tflite, then time or weigh it).
MEASURED = ("latency_ms", "tflite_kb")
#: Options a budget dict may hold beside its kind.
OPTIONS = {"latency_ms": ("threads",)}


@dataclasses.dataclass(frozen=True)
class Budget:
    """A parsed budget target.

    Attributes:
        kind: One of ``COUNTED + MEASURED``.
        value: The limit (> 0).
        threads: LiteRT threads for ``latency_ms``.
    """

    kind: str
    value: float
    threads: int = 1

    @property
    def measured(self) -> bool:
        """Whether the cost is measured on an exported model rather than counted."""
        return self.kind in MEASURED

    def with_value(self, value: float) -> dict:
        """The same budget as a dict, at another limit."""
        options = {"threads": self.threads} if self.kind == "latency_ms" else {}
        return {self.kind: float(value), **options}


def parse_budget(target: dict) -> Budget:
    """Checks a budget dict and returns it parsed.

    Raises:
        ValueError: Naming the accepted forms, for anything else.
    """
    kinds = [key for key in target if key in COUNTED + MEASURED]
    usage = ("a budget target is one of {'flops': F}, {'params': P}, {'latency_ms': L} "
             "(with an optional 'threads': n) or {'tflite_kb': S}, each > 0")
    if len(kinds) != 1:
        raise ValueError(f"{usage}; got {target!r}.")
    kind = kinds[0]
    extra = sorted(set(target) - {kind} - set(OPTIONS.get(kind, ())))
    if extra:
        raise ValueError(f"{usage}; {kind} takes no {extra}.")
    try:  # YAML reads 1.5e7 (no sign in the exponent) as a string
        value = float(target[kind])
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{usage}; got {kind}={target[kind]!r}.")
    threads = target.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"budget threads must be an integer >= 1, got {threads!r}.")
    return Budget(kind, value, threads)
