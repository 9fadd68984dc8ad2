"""The per-layer latency table against a known synthetic cost, and its cache."""

import keras
import numpy as np
import pytest

from tfprune.export import latency_model
from tfprune.export.latency_model import measure_latency_table
from tfprune.graph.channels import graph_for
from tfprune.plans import PruningPlan
from tfprune.pruning.latency_cost import CallTimes, KeepLatency
from tfprune.slimming import slim

CONSTANT_MS = 0.5


def layer_ms(layer) -> float:
    """A synthetic layer time, piecewise-linear where it is timed (so interpolation is exact).

    Bilinear in (input, output) channels; a depthwise convolution's, timed on the
    diagonal, linear in its channels.
    """
    inputs, outputs = layer.input.shape[-1], layer.output.shape[-1]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return 0.03 * inputs + 0.1
    return 0.01 * inputs * outputs + 0.02 * outputs + 0.05 * inputs + 0.1


def kernel_layers(model):
    return [layer for layer in model._flatten_layers(include_self=False)
            if getattr(layer, "kernel", None) is not None]


def synthetic_timer(calls: list | None = None):
    """Sums ``layer_ms`` over a model's kernel layers, plus a constant for a whole model."""
    def timer(model):
        if calls is not None:
            calls.append(model.name)
        layers = kernel_layers(model)
        total = sum(layer_ms(layer) for layer in layers)
        return total + (CONSTANT_MS if len(layers) > 1 else 0.0)
    return timer


def small_cnn():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Conv2D(12, 1, name="expand")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


def test_predictions_equal_the_synthetic_cost_of_the_slimmed_model():
    model = small_cnn()
    graph = graph_for(model)
    table = measure_latency_table(model, graph, timer=synthetic_timer())
    assert {c.name for c in table.calls} == {"stem", "depthwise", "expand", "hidden", "logits"}
    depthwise = next(c for c in table.calls if c.name == "depthwise")
    assert len(depthwise.out_counts) == 1  # follows its input: timed on the diagonal only
    stem = next(c for c in table.calls if c.name == "stem")
    assert stem.in_counts == [3] and stem.out_counts == [2, 4, 6, 8]
    cost = KeepLatency(graph, table)
    assert cost.residual == pytest.approx(CONSTANT_MS)
    rng = np.random.default_rng(0)
    for _ in range(5):  # random plans, counts below the grid's lowest point included
        keep = {g.index: rng.random(g.size) < rng.uniform(0.1, 1.0) for g in graph.groups}
        for mask in keep.values():
            mask[rng.integers(mask.size)] = True
        plan = PruningPlan.from_groups(graph.groups, [keep[g.index] for g in graph.groups],
                                       [np.ones(g.size) for g in graph.groups])
        expected = synthetic_timer()(slim(model, plan))  # counted on the slimmed layers' shapes
        assert cost(keep) == pytest.approx(expected, rel=1e-9)


def test_interpolation_is_linear_between_points_and_past_the_ends():
    times = CallTimes("layer", [4, 8], [2, 6], [[1.0, 2.0], [3.0, 5.0]])
    assert times.at(4, 2) == 1.0 and times.at(8, 6) == 5.0
    assert times.at(6, 4) == pytest.approx((1.5 + 4.0) / 2)  # bilinear
    assert times.at(2, 2) == pytest.approx(0.0)  # linear past the low end: 1 - (3 - 1) / 2
    assert times.at(0, 2) == 0.0  # never below 0
    assert times.at(12, 2) == pytest.approx(5.0)


def test_a_table_of_another_model_is_refused():
    table = measure_latency_table(small_cnn(), timer=synthetic_timer())
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, name="x")(inputs)))
    with pytest.raises(ValueError, match="measured on another model"):
        KeepLatency(graph_for(other), table)


def test_measurements_are_cached_per_machine_and_reused(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(latency_model, "litert_timer",
                        lambda threads, repeats: synthetic_timer(calls))
    first = measure_latency_table(small_cnn(), round_to=4, cache_dir=tmp_path)
    timed = len(calls)
    assert timed > 2 and list((tmp_path / "latency").glob("*.json"))
    calls.clear()
    second = measure_latency_table(small_cnn(), round_to=4, cache_dir=tmp_path)
    assert len(calls) == 1  # only the whole model is timed again
    assert second.calls == first.calls
    # round_to: counts are multiples of 4 (or the dense count)
    assert all(count % 4 == 0 or count in (3, 6) for c in first.calls
               for count in c.in_counts + c.out_counts)
    (next((tmp_path / "latency").glob("*.json"))).write_text("{damaged")
    calls.clear()
    measure_latency_table(small_cnn(), round_to=4, cache_dir=tmp_path)
    assert len(calls) == timed  # a damaged cache is measured again, not trusted
