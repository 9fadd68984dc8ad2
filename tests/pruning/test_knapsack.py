"""The latency knapsack against brute force over every plan of a tiny model."""

import itertools

import keras
import numpy as np
import pytest

from tfprune.graph.channels import graph_for
from tfprune.pruning.budget_search import FloorsReached, budget_keep
from tfprune.pruning.knapsack import knapsack_keep
from tfprune.pruning.latency_cost import CallTimes, KeepLatency, LatencyTable


def dense_chain():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(5, name="a")(inputs)
    x = keras.layers.Dense(4, name="b")(x)
    x = keras.layers.Dense(4, name="c")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def synthetic_table(ms) -> LatencyTable:
    """Each layer's time ``ms(in, out)`` on its whole grid of channel counts."""
    sizes = {"a": (6, 5), "b": (5, 4), "c": (4, 4), "out": (4, 2)}
    fixed_in, fixed_out = {"a"}, {"out"}
    calls = []
    for name, (inputs, outputs) in sizes.items():
        ins = [inputs] if name in fixed_in else list(range(1, inputs + 1))
        outs = [outputs] if name in fixed_out else list(range(1, outputs + 1))
        calls.append(CallTimes(name, ins, outs, [[ms(a, b) for b in outs] for a in ins]))
    return LatencyTable(sum(ms(*size) for size in sizes.values()) + 0.3, calls)


def additive(a, b):
    """No input x output term: the knapsack's savings are exact."""
    return 0.37 * b + 0.11 * a + 0.05


def bilinear(a, b):
    """A layer's time depends on two groups at once: the knapsack iterates."""
    return 0.043 * a * b + 0.07 * b + 0.02 * a + 0.05


def brute_force(cost, graph, units, budget):
    """The least score lost over every plan (counts >= 1) predicted under ``budget``."""
    orders = [np.sort(u) for u in units]
    best = None
    for counts in itertools.product(*[range(1, g.size + 1) for g in graph.groups]):
        kept = {g.index: k for g, k in zip(graph.groups, counts, strict=True)}
        if cost.from_counts(kept) <= budget:
            lost = sum(float(o[:g.size - k].sum()) for o, g, k in
                       zip(orders, graph.groups, counts, strict=True))
            best = lost if best is None else min(best, lost)
    return best


def lost_of(keep, units):
    return sum(float(u[~k].sum()) for u, k in zip(units, keep, strict=True))


@pytest.mark.parametrize("ms", [additive, bilinear])
def test_the_knapsack_finds_the_brute_force_optimum(ms):
    graph = graph_for(dense_chain())
    cost = KeepLatency(graph, synthetic_table(ms))
    dense = cost.from_counts({g.index: g.size for g in graph.groups})
    rng = np.random.default_rng(0)
    floors = [1] * len(graph.groups)
    exact = greedy_worse = 0
    for trial in range(12):
        units = [rng.exponential(size=g.size) for g in graph.groups]
        budget = dense * rng.uniform(0.45, 0.95)
        keep = knapsack_keep(cost, units, floors, budget)
        predicted = cost({g.index: k for g, k in zip(graph.groups, keep, strict=True)})
        assert predicted <= budget + 1e-9, trial
        lost, optimum = lost_of(keep, units), brute_force(cost, graph, units, budget)
        assert lost >= optimum - 1e-9  # nothing beats brute force
        # Within one step of the savings' grid: optimal for a budget 1% tighter.
        assert lost <= brute_force(cost, graph, units, budget - 0.01 * dense) + 1e-9, trial
        exact += lost <= optimum + 1e-9
        greedy = budget_keep(cost, units, floors, budget)
        greedy_worse += lost_of(greedy, units) > lost + 1e-9
    assert exact >= 10  # the optimum itself nearly always
    print(ms.__name__, "exact", exact, "of 12; greedy worse in", greedy_worse)


def test_round_to_floors_and_previous_plans_are_respected():
    graph = graph_for(dense_chain())
    cost = KeepLatency(graph, synthetic_table(bilinear))
    units = [np.arange(g.size, dtype=float) for g in graph.groups]
    previous = [np.ones(g.size, bool) for g in graph.groups]
    previous[0][4] = False  # group "a" already lost its best channel
    dense = cost.from_counts({g.index: g.size for g in graph.groups})
    keep = knapsack_keep(cost, units, [2, 2, 2], 0.6 * dense, previous, round_to=2)
    assert not keep[0][4]  # removed channels stay removed
    for mask in keep:  # every group starts at 4 kept: multiples of 2, at least 2
        assert mask.sum() >= 2 and mask.sum() % 2 == 0
    with pytest.raises(FloorsReached, match="cannot be met: with every group at its floor"):
        knapsack_keep(cost, units, [4, 4, 4], 0.3 * dense)
