"""Pruning to a budget: channels go until the model fits ``{"flops": F}`` or ``{"params": P}``.

FLOPs count as ``summary.json`` does (2 per multiply-accumulate of the kernel
layers, ``tfprune.pruning.stats``); parameters as ``param_count`` (all weights,
minus those removed, minus the removed channels' BatchNorm statistics).

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

from tfprune.budgets import COUNTED
from tfprune.handlers import handler_for
from tfprune.pruning.groups import ChannelGraph
from tfprune.pruning.masks import graph_variable_masks

#: Counted budget kinds (the measured ones: ``tfprune.pruning.measured``).
BUDGETS = COUNTED


class FloorsReached(ValueError):
    """Every group is at its floor and the cost is still over the budget.

    Attributes:
        keep: Per group, the keep-mask at the floors (the smallest plan there is).
    """

    def __init__(self, message: str, keep: list[np.ndarray]):
        super().__init__(message)
        self.keep = keep


class CostModel:
    """FLOPs or parameters of a model under keep-masks, from one channel analysis.

    Args:
        model: The model.
        graph: Its ``ChannelGraph``.
        kind: ``"flops"`` or ``"params"``.
    """

    def __init__(self, model: keras.Model, graph: ChannelGraph, kind: str):
        if kind not in BUDGETS:
            raise ValueError(f"budget must be one of {list(BUDGETS)}, got {kind!r}.")
        self.model, self.graph, self.kind = model, graph, kind
        # Each call's handler, looked up once: __call__ runs at every step of a budget search.
        handlers = [(call, handler_for(call.operation)) for call in graph.calls]
        self.kernel_calls = [(call, handler) for call, handler in handlers
                             if handler and handler.kernels(call.operation)]
        self.total_params = int(model.count_params())
        self.batch_norms = {group.index: sum(
            isinstance(graph.operations[name], keras.layers.BatchNormalization)
            for name in group.followers) for group in graph.groups}

    def __call__(self, keep: dict) -> int:
        """The cost with ``{group index: keep-mask}`` applied."""
        masks = {id(v): m for v, m in graph_variable_masks(self.graph, keep)}

        def kept(variable) -> int:
            mask = masks.get(id(variable))
            return int(np.prod(variable.shape)) if mask is None else int(np.count_nonzero(mask))

        if self.kind == "flops":
            return sum(handler.flops(call, kept) for call, handler in self.kernel_calls)
        removed = sum(int(m.size - np.count_nonzero(m)) for m in masks.values())
        removed += sum(2 * int((~keep[g]).sum()) * count for g, count in
                       self.batch_norms.items())
        return self.total_params - removed


def dense_cost(model: keras.Model, budget) -> float:
    """The unpruned model's cost in a budget's unit (counted, or measured for latency / size).

    Args:
        model: The model.
        budget: A ``tfprune.budgets.Budget``.
    """
    if budget.measured:
        from tfprune.pruning.measured import measure

        return measure(model, budget)
    from tfprune.pruning.stats import flops, param_count

    return float((flops if budget.kind == "flops" else param_count)(model))


def budget_keep(cost: CostModel, units: list[np.ndarray], floors: list[int], budget: float,
                previous: list[np.ndarray] | None = None, progress=None,
                round_to: int = 1) -> list[np.ndarray]:
    """Keep-masks under ``budget`` (see the module docstring).

    Args:
        cost: The ``CostModel`` of the budgeted kind.
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


def _savings(cost: CostModel, keep: dict, current: int) -> dict[int, float]:
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
        stops = _block_stops(kept, floor, round_to)
        for high, low in zip([kept, *stops], stops, strict=False):
            block = order[kept - high:kept - low]
            found.append((float(np.mean(scores[block])) / saving, group.index, block,
                          saving * block.size))
    return found


def _block_stops(kept: int, floor: int, round_to: int) -> list[int]:
    """The kept counts a group can step down to, largest first.

    Every count down to ``floor`` for ``round_to`` 1; else the multiples of
    ``round_to`` below ``kept`` and at or above ``floor``.
    """
    if round_to == 1:
        return list(range(kept - 1, max(floor, 0) - 1, -1))
    return [k for k in range(kept - 1, floor - 1, -1) if k % round_to == 0 and k > 0]
