"""Budget targets: one registered class per kind, parsed in one place.

``make_plan``, schedules and configs all parse budgets here.

A budget is written as a dict with one cost and its limit:

- ``{"flops": F}``: FLOPs as ``summary.json`` counts them (2 x multiply-accumulates);
- ``{"params": P}``: parameters;
- ``{"latency_ms": L}`` (optionally ``"threads": n``, default 1, and
  ``"ranking": "latency"``, default ``"flops"``): the slimmed model's float
  .tflite measured in the LiteRT interpreter at batch 1 on this machine;
  channels go by score per FLOP saved, or with ``"ranking": "latency"`` by a
  knapsack over each layer's own LiteRT time (``tfprune.export.latency_model``);
- ``{"tflite_kb": S}``: the slimmed model's float .tflite file size in KiB.

The first two are counted from the channel analysis (``CountedBudget``); the
last two are measured on an exported model (``MeasuredBudget``, defined beside
the export code in ``tfprune.export.measured_budgets``, which this module loads
by name the first time such a budget is parsed, so the core never imports the
export code).

Adding a budget is one class::

    @register_budget
    @dataclasses.dataclass(frozen=True)
    class EnergyBudget(MeasuredBudget):
        kind: ClassVar[str] = "energy_mj"
        unit: ClassVar[str] = "mJ"
        proxy: ClassVar[str] = "flops"

        def measure(self, model):
            return my_energy_meter(model)

after which ``make_plan(model, scores, {"energy_mj": 3.0})`` plans for it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import ClassVar

#: Budget kinds -> their class (``register_budget``).
_REGISTRY: dict[str, type[Budget]] = {}
#: Built-in kinds whose class lives in a module that registers it when imported (loaded on
#: first use, so that parsing a budget never imports LiteRT unless it is measured).
_BUILT_IN_MODULES = {"latency_ms": "tfprune.export.measured_budgets",
                     "tflite_kb": "tfprune.export.measured_budgets"}


@dataclasses.dataclass(frozen=True)
class Budget:
    """A budget target: the model must cost at most ``value`` in ``kind``'s unit.

    Attributes:
        value: The limit (> 0).
    """

    value: float
    #: The key naming it in a budget dict.
    kind: ClassVar[str] = ""
    #: Its unit, for messages.
    unit: ClassVar[str] = ""
    #: Whether it is measured on an exported model rather than counted.
    measured: ClassVar[bool] = False

    def __post_init__(self):
        if not self.value > 0:
            raise ValueError(f"{_USAGE}; got {self.kind}={self.value!r}.")

    def options(self) -> dict:
        """The budget's options beside its value (``{"threads": 1}``...).

        An option declared with ``metadata={"omit_default": True}`` is left out
        at its default, so budgets written before it existed read the same.
        """
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name != "value" and not (field.metadata.get("omit_default")
                                                  and getattr(self, field.name) == field.default)}

    def with_value(self, value: float) -> dict:
        """The same budget as a dict, at another limit."""
        return {self.kind: float(value), **self.options()}

    def to_dict(self) -> dict:
        """The budget as a dict (its config form)."""
        return self.with_value(self.value)


@dataclasses.dataclass(frozen=True)
class CountedBudget(Budget):
    """A cost counted exactly from the channel analysis (``tfprune.pruning.cost``).

    Subclasses implement ``count``.
    """

    @classmethod
    def count(cls, cost, masks: dict | None) -> int:
        """The cost under masks of removed entries.

        Args:
            cost: The model's ``tfprune.pruning.cost.CostModel``.
            masks: ``{id(variable): mask}`` (None: the dense model).
        """
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class MeasuredBudget(Budget):
    """A cost measured on the slimmed model; the search follows a counted proxy.

    Subclasses set ``proxy`` (the counted kind the measured cost follows
    closely), ``aim`` (where under the limit the search aims), ``confirm``
    (whether a plan that lands is measured again) and implement ``measure``.
    """

    measured: ClassVar[bool] = True
    #: The counted budget kind the search plans for between measurements.
    proxy: ClassVar[str] = "flops"
    #: The search aims at ``aim * value``.
    aim: ClassVar[float] = 0.95
    #: A noisy measurement (timing): a plan that lands is measured again, the slower counts.
    confirm: ClassVar[bool] = False

    def measure(self, model) -> float:
        """The model's cost in this budget's unit.

        Raises:
            ValueError: If the model cannot be measured.
        """
        raise NotImplementedError

    def ranking_cost(self, model, graph, round_to: int = 1, progress=None):
        """The cost the search ranks channels by, if not its counted ``proxy``.

        None (default): channels go by score per unit of ``proxy`` saved. A
        budget returning a cost of its own (``LatencyBudget(ranking="latency")``:
        a ``tfprune.pruning.latency_cost.KeepLatency``) is planned for by a
        knapsack over it (``tfprune.pruning.knapsack``).
        """
        return None


@dataclasses.dataclass(frozen=True)
class FlopsBudget(CountedBudget):
    """``{"flops": F}``: 2 x the kernel layers' multiply-accumulates."""

    kind: ClassVar[str] = "flops"
    unit: ClassVar[str] = "FLOPs"

    @classmethod
    def count(cls, cost, masks: dict | None) -> int:
        """FLOPs of one example under the masks."""
        return cost.flops(masks)


@dataclasses.dataclass(frozen=True)
class ParamsBudget(CountedBudget):
    """``{"params": P}``: every weight, minus the removed channels'."""

    kind: ClassVar[str] = "params"
    unit: ClassVar[str] = "parameters"

    @classmethod
    def count(cls, cost, masks: dict | None) -> int:
        """Parameters left under the masks."""
        return cost.params(masks)


def register_budget(cls: type[Budget]) -> type[Budget]:
    """Registers a budget class under its ``kind`` (a class decorator).

    Raises:
        ValueError: If the class has no kind or another class has it.
    """
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind.")
    if _REGISTRY.get(cls.kind, cls) is not cls:
        raise ValueError(f"budget kind {cls.kind!r} is already registered "
                         f"({_REGISTRY[cls.kind].__name__}).")
    _REGISTRY[cls.kind] = cls
    return cls


register_budget(FlopsBudget)
register_budget(ParamsBudget)


def budget_kinds() -> list[str]:
    """Every budget kind: registered and built in."""
    return list(dict.fromkeys([*_REGISTRY, *_BUILT_IN_MODULES]))


def budget_class(kind: str) -> type[Budget]:
    """The class of a budget kind (loading a built-in measured one on first use).

    Raises:
        ValueError: For an unknown kind.
    """
    if kind not in _REGISTRY and kind in _BUILT_IN_MODULES:
        importlib.import_module(_BUILT_IN_MODULES[kind])
    if kind not in _REGISTRY:
        raise ValueError(f"{_USAGE}; got the kind {kind!r}.")
    return _REGISTRY[kind]


def is_budget(target) -> bool:
    """Whether a target is a budget (a ``Budget`` or a dict naming a budget kind)."""
    return isinstance(target, Budget) or (
        isinstance(target, dict) and bool(set(target) & set(budget_kinds())))


_USAGE = ("a budget target is one of {'flops': F}, {'params': P}, {'latency_ms': L} "
          "(with optional 'threads': n and 'ranking': 'flops' or 'latency') or "
          "{'tflite_kb': S}, each > 0")


def parse_budget(target: dict | Budget) -> Budget:
    """Checks a budget dict and returns it as its ``Budget`` class.

    Raises:
        ValueError: Naming the accepted forms, for anything else.
    """
    if isinstance(target, Budget):
        return target
    kinds = [key for key in target if key in budget_kinds()] if isinstance(target, dict) else []
    if len(kinds) != 1:
        raise ValueError(f"{_USAGE}; got {target!r}.")
    kind = kinds[0]
    cls = budget_class(kind)
    option_names = [f.name for f in dataclasses.fields(cls) if f.name != "value"]
    extra = sorted(set(target) - {kind} - set(option_names))
    if extra:
        raise ValueError(f"{_USAGE}; {kind} takes no {extra}.")
    try:  # YAML reads 1.5e7 (no sign in the exponent) as a string
        value = float(target[kind])
    except (TypeError, ValueError):
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{_USAGE}; got {kind}={target[kind]!r}.")
    return cls(value, **{name: target[name] for name in option_names if name in target})
