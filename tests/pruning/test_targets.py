"""Typed targets and the budget registry: the plain forms convert at make_plan's boundary,
and a new budget is one registered class."""

import dataclasses
from typing import ClassVar

import keras
import numpy as np
import pytest

import tfprune
from tfprune import budget_targets
from tfprune.budget_targets import (
    FlopsBudget,
    MeasuredBudget,
    ParamsBudget,
    budget_kinds,
    parse_budget,
    register_budget,
)
from tfprune.plans.pruning_plan import PlanError
from tfprune.pruning.stats import flops
from tfprune.pruning.targets import Fraction, LayerRatios, as_target, to_json


def cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="c2")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


@pytest.mark.parametrize("plain, typed", [
    (0.25, Fraction(0.25)),
    (np.float32(0.25), Fraction(0.25)),
    ({"flops": 1e5}, FlopsBudget(1e5)),
    ({"params": 300}, ParamsBudget(300.0)),
    ({"c1": 0.5}, LayerRatios({"c1": 0.5})),
])
def test_plain_and_typed_targets_make_the_same_plan(plain, typed, tmp_path):
    model = cnn()
    scores = tfprune.score(model, "magnitude")
    assert as_target(plain) == typed
    one, other = tfprune.make_plan(model, scores, plain), tfprune.make_plan(model, scores, typed)
    for key in one.keep:
        np.testing.assert_array_equal(one.keep[key], other.keep[key])
    assert one.history[-1]["target"] == to_json(typed)
    one.save(tmp_path / "plan")  # the history is plain JSON, whatever form the target had


def test_bad_targets_are_refused_at_the_boundary():
    with pytest.raises(PlanError, match=r"target must be in \[0, 1\)"):
        as_target(1.5)
    with pytest.raises(PlanError, match="a budget target is one of"):
        as_target({"flops": -1})
    with pytest.raises(PlanError, match="fraction in"):
        as_target("half")


def test_a_new_budget_is_one_registered_class(monkeypatch):
    monkeypatch.setattr(budget_targets, "_REGISTRY", dict(budget_targets._REGISTRY))

    @register_budget
    @dataclasses.dataclass(frozen=True)
    class WideFlopsBudget(MeasuredBudget):
        """Measured as FLOPs / 1000 (a stand-in for an energy meter)."""

        kind: ClassVar[str] = "test_kflops"
        unit: ClassVar[str] = "kFLOPs"
        proxy: ClassVar[str] = "flops"
        aim: ClassVar[float] = 0.97

        def measure(self, model):
            return flops(model) / 1000

    assert "test_kflops" in budget_kinds()
    model = cnn()
    limit = 0.5 * flops(model) / 1000
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), {"test_kflops": limit})
    assert flops(tfprune.slim(model, plan)) / 1000 <= limit
    assert isinstance(parse_budget({"test_kflops": 2}), WideFlopsBudget)
    with pytest.raises(ValueError, match="already registered"):
        register_budget(type("Other", (WideFlopsBudget,), {}))


def test_measured_budgets_load_on_first_use_and_keep_their_options():
    budget = parse_budget({"latency_ms": 2, "threads": 2})
    assert budget.measured and budget.threads == 2 and budget.unit == "ms"
    assert budget.to_dict() == {"latency_ms": 2.0, "threads": 2}
    with pytest.raises(ValueError, match="threads must be an integer"):
        parse_budget({"latency_ms": 2, "threads": 0})
    with pytest.raises(ValueError, match="takes no"):
        parse_budget({"tflite_kb": 2, "threads": 1})
