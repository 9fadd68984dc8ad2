"""Plans under a latency budget: a multiple-choice knapsack over each group's kept count.

Latency-aware ranking, as HALP (Shen et al., NeurIPS 2022) and NetAdapt
(Yang et al., ECCV 2018) do it: each group chooses how many channels it keeps
(its best-scored ones; a multiple of ``round_to``, or all; never below its
floor), and the choice that loses the least score while the predicted latency
fits the budget is found by dynamic programming over the latency each choice
saves. A layer's time depends on two groups (its input's and its output's),
so the savings of one group's choice are taken with the other groups at
their current counts; the knapsack is solved again with the new counts (at
most ``rounds`` times, until the counts stop changing), keeping the best plan
that fits. Savings are counted in steps of ``1 / resolution`` of their range,
rounded down, so a plan the knapsack accepts fits the budget as predicted
(the optimum is missed by at most one such step of slack). If the
interactions still leave the prediction over the budget, channels go one
block at a time by score per ms saved (``budget_keep``) until it fits.
"""

from __future__ import annotations

import math

import numpy as np

from tfprune.pruning.budget_search import FloorsReached, block_stops, budget_keep
from tfprune.pruning.latency_cost import KeepLatency


def knapsack_keep(cost: KeepLatency, units: list[np.ndarray], floors: list[int],
                  budget: float, previous: list[np.ndarray] | None = None, progress=None,
                  round_to: int = 1, resolution: int = 2000,
                  rounds: int = 4) -> list[np.ndarray]:
    """Keep-masks whose predicted latency fits ``budget`` and lose the least score.

    Args:
        cost: The predicted latency of keep-masks (``KeepLatency``).
        units: Per group, one score per channel (higher is more important).
        floors: Per group, the fewest channels it may keep.
        budget: The latency to fit, in ms.
        previous: Per group, the keep-mask in force (its removed channels stay removed).
        progress: Called with the predicted latency after each knapsack.
        round_to: Every group keeps a multiple of it (or all its channels).
        resolution: Steps the savings' range is counted in.
        rounds: Knapsacks solved at most.

    Raises:
        FloorsReached: When even every group at its floor is predicted over the budget.
    """
    groups = cost.graph.groups
    start = [np.ones(g.size, bool) if previous is None else np.asarray(previous[i], bool)
             for i, g in enumerate(groups)]
    choices = [_Choices(mask, scores, floor, round_to)
               for mask, scores, floor in zip(start, units, floors, strict=True)]
    counts = {g.index: choice.counts[0] for g, choice in zip(groups, choices, strict=True)}
    touching = _calls_touching(cost)
    best = None
    for _ in range(rounds):
        picked = _solve(cost, groups, choices, counts, touching, budget, resolution)
        if picked is None:
            floor_counts = {g.index: c.counts[-1] for g, c in zip(groups, choices, strict=True)}
            raise FloorsReached(
                f"the budget latency_ms <= {budget:g} cannot be met: with every group at its "
                f"floor (min_keep{'' if round_to == 1 else f', round_to={round_to}'}) the "
                f"predicted latency is {cost.from_counts(floor_counts):.3f} ms.",
                [c.mask(floor_counts[g.index]) for g, c in zip(groups, choices, strict=True)])
        predicted = cost.from_counts(picked)
        if progress is not None:
            progress(predicted)
        lost = sum(c.lost(picked[g.index]) for g, c in zip(groups, choices, strict=True))
        if predicted <= budget and (best is None or lost < best[0]):
            best = (lost, picked)
        if picked == counts:
            break
        counts = picked
    final = best[1] if best is not None else counts
    keep = [c.mask(final[g.index]) for g, c in zip(groups, choices, strict=True)]
    if best is None:  # the interactions left it over: finish channel by channel
        keep = budget_keep(cost, units, floors, budget, keep, round_to=round_to)
    return keep


class _Choices:
    """One group's options: keep its ``counts[i]`` best-scored channels (dense first)."""

    def __init__(self, mask: np.ndarray, scores: np.ndarray, floor: int, round_to: int):
        kept = np.flatnonzero(mask)
        self.size = mask.size
        self.order = kept[np.argsort(np.asarray(scores)[kept], kind="stable")]  # worst first
        self.counts = [kept.size, *block_stops(kept.size, floor, round_to)]
        self.removed_scores = np.concatenate([[0.0], np.cumsum(
            np.asarray(scores, np.float64)[self.order])])

    def lost(self, count: int) -> float:
        """The score of the channels removed to keep ``count``."""
        return float(self.removed_scores[self.order.size - count])

    def mask(self, count: int) -> np.ndarray:
        """The keep-mask of the ``count`` best-scored kept channels."""
        mask = np.zeros(self.size, bool)
        mask[self.order[self.order.size - count:]] = True
        return mask


def _calls_touching(cost: KeepLatency) -> dict[int, list]:
    """Per group index, the timed calls whose input or output count it changes."""
    touching: dict[int, list] = {g.index: [] for g in cost.graph.groups}
    for times in cost.table.calls:
        for count in cost.counts[times.name]:
            for group in (count.groups if count else {}):
                if times not in touching[group]:
                    touching[group].append(times)
    return touching


def _solve(cost, groups, choices, counts, touching, budget, resolution) -> dict | None:
    """One knapsack around ``counts``; the counts it picks, or None if none fits."""
    need = cost.from_counts(counts) - budget  # the ms to save (negative: room to spare)
    savings = []
    for group, choice in zip(groups, choices, strict=True):
        calls = touching[group.index]
        now = cost.calls_time(calls, counts)
        savings.append(np.array([now - cost.calls_time(calls, {**counts, group.index: k})
                                 for k in choice.counts]))
    spread = sum(float(s.max() - s.min()) for s in savings)
    step = max(spread, 1e-9) / resolution
    steps = [np.floor(s / step + 1e-9).astype(np.int64) for s in savings]
    lows = [int(s.min()) for s in steps]
    width = sum(int(s.max()) - low for s, low in zip(steps, lows, strict=True)) + 1
    total = np.full(width, np.inf)
    total[0] = 0.0
    picks = []
    for choice, step_counts, low in zip(choices, steps, lows, strict=True):
        merged, pick = np.full(width, np.inf), np.zeros(width, np.int32)
        for option, (count, shift) in enumerate(zip(choice.counts, step_counts - low,
                                                    strict=True)):
            candidate = np.full(width, np.inf)
            candidate[shift:] = total[:width - shift] + choice.lost(count)
            better = candidate < merged
            merged[better], pick[better] = candidate[better], option
        total = merged
        picks.append(pick)
    first = max(0, math.ceil(need / step - 1e-9) - sum(lows))
    if first >= width or not np.isfinite(total[first:]).any():
        return None
    position = first + int(np.argmin(total[first:]))
    picked = {}
    for group, choice, pick, step_counts, low in reversed(list(zip(
            groups, choices, picks, steps, lows, strict=True))):
        option = int(pick[position])
        picked[group.index] = choice.counts[option]
        position -= int(step_counts[option]) - low
    return picked
