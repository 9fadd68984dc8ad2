"""Pruning to a budget: channels go until the model fits ``{"flops": F}`` or ``{"params": P}``.

FLOPs and parameters are counted by the one cost model
(``tfprune.pruning.cost``), as ``summary.json`` counts them.

The rule: channels go in order of score per unit of budgeted cost. A
channel's cost is what removing it saves: a kernel layer's FLOPs (and
parameters) are linear in each channel group's kept count when the others
are fixed, so every channel of a group saves the same amount, measured as
``(cost now - cost with the group emptied) / kept``. Each step recomputes
these savings (removing one group's channels makes its neighbours' channels
cheaper) and removes the channels with the lowest ``score / saving``, at most
1% of those left and about half of what the remaining excess needs, so the
result lands just under the budget (within 2% for FLOPs and parameters on
the models tested). Groups never go below their floors; removed channels
stay removed.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfprune.pruning.cost import CostModel, KeepCost


class FloorsReached(ValueError):
    """Every group is at its floor and the cost is still over the budget.

    Attributes:
        keep: Per group, the keep-mask at the floors (the smallest plan there is).
    """

    def __init__(self, message: str, keep: list[np.ndarray]):
        super().__init__(message)
        self.keep = keep


def dense_cost(model: keras.Model, budget) -> float:
    """The unpruned model's cost in a budget's unit (counted, or measured for latency / size).

    Args:
        model: The model.
        budget: A ``tfprune.budget_targets.Budget``.
    """
    if budget.measured:
        return budget.measure(model)
    return float(budget.count(CostModel(model), None))


def budget_keep(cost: KeepCost, units: list[np.ndarray], floors: list[int], budget: float,
                previous: list[np.ndarray] | None = None, progress=None,
                round_to: int = 1) -> list[np.ndarray]:
    """Keep-masks under ``budget`` (see the module docstring).

    Args:
        cost: The budgeted kind's cost of keep-masks (``KeepCost``).
        units: Per group, one score per channel (higher is more important).
        floors: Per group, the fewest channels it may keep.
        budget: The cost the model must fit.
        previous: Per group, the keep-mask in force (its removed channels stay removed).
        progress: Called with the cost after each step.
        round_to: Every group keeps a multiple of it (or all its channels):
            channels then go in blocks, a group's lowest-scored ``round_to`` kept
            channels at a time, ranked by their mean score per unit of cost
            saved; the result is under the budget by at most about a block's
            saving.

    Raises:
        FloorsReached: When even the floors (``min_keep``) leave the cost above the budget.
    """
    groups = cost.graph.groups
    keep = {g.index: (np.ones(g.size, bool) if previous is None else previous[i].copy())
            for i, g in enumerate(groups)}
    current = cost(keep)
    if current > budget:  # the smallest plan first: a budget it misses fails at once
        smallest = _at_floors(groups, units, floors, keep, round_to)
        least = cost(smallest)
        if least > budget:
            raise FloorsReached(f"the budget {cost.kind} <= {budget:,.0f} cannot be met: "
                                f"with every group at its floor (min_keep"
                                f"{'' if round_to == 1 else f', round_to={round_to}'}) the "
                                f"model has {least:,.0f}.", [smallest[g.index] for g in groups])
    while current > budget:
        savings = _savings(cost, keep, current)
        candidates = _candidates(groups, units, floors, keep, savings, round_to)
        if not candidates:
            raise FloorsReached(f"the budget {cost.kind} <= {budget:,.0f} cannot be met: "
                                f"with every group at its floor (min_keep"
                                f"{'' if round_to == 1 else f', round_to={round_to}'}) the "
                                f"model has {current:,.0f}.", [keep[g.index] for g in groups])
        candidates.sort(key=lambda candidate: candidate[0])
        per_block = np.mean([saving for *_, saving in candidates[:32]])
        needed = math.ceil(0.5 * (current - budget) / max(per_block, 1e-12))
        step = int(np.clip(needed, 1, max(1, len(candidates) // 100)))
        for _, group, channels, _ in candidates[:step]:
            keep[group][channels] = False
        current = cost(keep)
        if progress is not None:
            progress(current)
    return [keep[g.index] for g in groups]


def _at_floors(groups, units, floors, keep: dict, round_to: int) -> dict:
    """Every group at the fewest channels it can step down to, its best-scored kept ones."""
    smallest = {}
    for group, scores, floor in zip(groups, units, floors, strict=True):
        mask = keep[group.index]
        kept = int(mask.sum())
        stops = block_stops(kept, floor, round_to)
        count = stops[-1] if stops else kept
        channels = np.flatnonzero(mask)
        best = channels[np.argsort(-np.asarray(scores)[channels], kind="stable")[:count]]
        smallest[group.index] = np.zeros_like(mask)
        smallest[group.index][best] = True
    return smallest


def _savings(cost: KeepCost, keep: dict, current: int) -> dict[int, float]:
    """Per group, what removing one more of its kept channels saves."""
    savings = {}
    for index, mask in keep.items():
        kept = int(mask.sum())
        if kept == 0:
            continue
        emptied = dict(keep)
        emptied[index] = np.zeros_like(mask)
        savings[index] = (current - cost(emptied)) / kept
    return savings


def _candidates(groups, units, floors, keep, savings, round_to: int = 1) -> list[tuple]:
    """``(score / saving, group, channels, saving)`` of every removable block of channels.

    A block is one channel (``round_to`` 1), or what takes a group from its
    kept count to the next multiple of ``round_to`` below it: its
    lowest-scored kept channels, ranked by their mean score per channel saved.
    """
    found = []
    for group, scores, floor in zip(groups, units, floors, strict=True):
        mask, saving = keep[group.index], savings.get(group.index, 0.0)
        if saving <= 0:
            continue
        channels = np.flatnonzero(mask)
        order = channels[np.argsort(scores[channels], kind="stable")]
        kept = int(mask.sum())
        stops = block_stops(kept, floor, round_to)
        for high, low in zip([kept, *stops], stops, strict=False):
            block = order[kept - high:kept - low]
            found.append((float(np.mean(scores[block])) / saving, group.index, block,
                          saving * block.size))
    return found


def block_stops(kept: int, floor: int, round_to: int) -> list[int]:
    """The kept counts a group can step down to, largest first.

    Every count down to ``floor`` for ``round_to`` 1; else the multiples of
    ``round_to`` below ``kept`` and at or above ``floor``.
    """
    if round_to == 1:
        return list(range(kept - 1, max(floor, 0) - 1, -1))
    return [k for k in range(kept - 1, floor - 1, -1) if k % round_to == 0 and k > 0]
