"""Measured budgets: LiteRT latency and .tflite file size of the slimmed model.

``{"latency_ms": L}`` and ``{"tflite_kb": S}`` cannot be counted from the
channel analysis; they are measured on this machine, by the budget's own
``measure`` (``tfprune.export.measured_budgets``: this module never imports
the export code). The search: the
measured cost follows a proxy closely (latency: FLOPs, or with the budget's
``ranking="latency"`` the latency predicted from each layer's own LiteRT
time; file size: parameters), so ``measured_keep`` plans for a proxy budget
(``tfprune.pruning.budget_search``: score per unit of proxy cost; for the
predicted latency, ``tfprune.pruning.knapsack``), slims the
model, exports it to float .tflite and measures it, then corrects the proxy
budget by the secant through its last two measurements, aiming a little
under the limit (the budget's ``aim``: 95% of it for latency, 99% for file
size). It stops at the first plan measured within ``2 * aim - 1`` of the limit
(10% under it for latency, 2% for file size), or after ``MAX_STEPS``
measurements. A budget whose measurement is noisy (latency: ``confirm``)
measures such a plan a second time and counts the slower of the two, so a
lucky measurement does not end the search over the limit. The plan kept is
the largest one measured under the limit.
Latency is the quickest of three LiteRT interpreters' medians of ``repeats``
batch-1 runs with ``threads`` threads after warm-up; measured again minutes
later it moves by the machine's timing drift (up to about 5% either way on a
shared 2-core machine, docs/results.md), so the aim leaves room under the
limit. File size is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from tfprune.budget_targets import MeasuredBudget
from tfprune.pruning.budget_search import FloorsReached, budget_keep
from tfprune.pruning.cost import KeepCost
from tfprune.pruning.knapsack import knapsack_keep
from tfprune.pruning.latency_cost import KeepLatency

#: Measurements at most.
MAX_STEPS = 8


def measured_keep(model: keras.Model, graph, budget: MeasuredBudget, units: list,
                  floors: list, previous: list | None, round_to: int,
                  slimmed: Callable[[list], keras.Model], progress=None) -> list[np.ndarray]:
    """Keep-masks whose slimmed model measures under ``budget`` (see the module docstring).

    Args:
        model: The model.
        graph: Its ``ChannelGraph``.
        budget: A measured budget (its ``measure`` exports and measures a model).
        units: Per group, one score per channel.
        floors: Per group, the fewest channels it may keep.
        previous: Per group, the keep-mask in force, or None.
        round_to: Every group keeps a multiple of it, or all.
        slimmed: Builds the slimmed model of a list of keep-masks.
        progress: Called with a line of text after each measurement.

    Raises:
        ValueError: If no plan within the floors measures under the budget.
    """
    say = progress or (lambda line: None)
    proxy = (budget.ranking_cost(model, graph, round_to=round_to, progress=say)
             or KeepCost(model, graph, budget.proxy))
    search = knapsack_keep if isinstance(proxy, KeepLatency) else budget_keep
    start = previous or [np.ones(g.size, bool) for g in graph.groups]
    points = [(float(proxy({g.index: k for g, k in zip(graph.groups, start, strict=True)})),
               budget.measure(slimmed(start)))]
    say(f"{budget.kind}: {points[0][1]:.3f} with the plan in force (limit {budget.value:g})")
    if points[0][1] <= budget.value:
        return start
    aim = budget.aim * budget.value
    best = None
    measured: dict[bytes, float] = {}  # each plan is measured once
    proxy_budget = points[0][0] * aim / points[0][1]
    for _ in range(MAX_STEPS):
        try:
            keep = search(proxy, units, floors, proxy_budget, previous, round_to=round_to)
        except FloorsReached as floored:  # the proxy budget is below the floors'
            keep = floored.keep
            value = budget.measure(slimmed(keep))
            say(f"{budget.kind}: {value:.3f} with every group at its floor "
                f"(limit {budget.value:g})")
            if value > budget.value and best is None:
                raise ValueError(
                    f"the budget {budget.kind} <= {budget.value:g} cannot be met: with every "
                    f"group at its floor (min_keep) the slimmed model measures {value:.3f} "
                    f"{budget.unit}. Raise the budget or lower min_keep.") from None
            if value <= budget.value and (best is None or value > best[0]):
                best = (value, keep)
            break
        cost = float(proxy({g.index: k for g, k in zip(graph.groups, keep, strict=True)}))
        signature = b"".join(np.packbits(k).tobytes() for k in keep)
        if signature in measured:  # a plan measured already (rounding): not timed again
            value = measured[signature]
        else:
            value = measured[signature] = budget.measure(slimmed(keep))
            shown = f"{cost:.3f} predicted" if search is knapsack_keep else f"{cost:,.0f}"
            say(f"{budget.kind}: {value:.3f} at {proxy.kind} {shown} (limit {budget.value:g})")
        landed = (2 * budget.aim - 1) * budget.value <= value <= budget.value
        if landed and budget.confirm:  # timed again: a lucky measurement does not end it
            value = measured[signature] = max(value, budget.measure(slimmed(keep)))
            say(f"{budget.kind}: {value:.3f} when measured again (limit {budget.value:g})")
            landed = value <= budget.value
        if value <= budget.value and (best is None or value > best[0]):
            best = (value, keep)
        if landed:
            break
        points.append((cost, value))
        (p0, m0), (p1, m1) = points[-2], points[-1]
        proportional = m1 / p1 if p1 > 0 else 1.0
        slope = (m1 - m0) / (p1 - p0) if p1 != p0 else proportional
        if slope <= 0:
            slope = proportional
        proxy_budget = float(np.clip(p1 + (aim - m1) / slope, 1e-6 * points[0][0],
                                     points[0][0]))
    if best is None:
        raise ValueError(f"no plan measured under {budget.kind} <= {budget.value:g} in "
                         f"{MAX_STEPS} tries (last {points[-1][1]:.3f}); the floors "
                         "(min_keep) may not allow it, or the machine's timing is noisy: "
                         "raise the budget or lower min_keep.")
    return best[1]
