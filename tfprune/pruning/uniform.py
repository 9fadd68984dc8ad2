"""Uniform plans: the same kept count in every block, per kind of channel group.

``make_plan(..., uniform=True)``. Groups of one kind are those whose first
source has the same name once block numbers are left out
(``decoder_block_0/attention/query_groups`` and
``decoder_block_1/attention/query_groups``) and the same size. After the
ranking has chosen how many channels each group keeps, every group of a kind
keeps the kind's mean count (rounded to the group's step, ``round_to`` and
its parts), its best-scored channels. Under a counted budget (FLOPs,
parameters) the kinds then lose a step at a time, the one losing the least
score per unit of cost saved first, until the budget holds. A uniform plan
slims a keras-hub backbone into its own class
(``tfprune.slimming.same_class``).
"""

from __future__ import annotations

import math
import re

import numpy as np


def kind_of(group) -> tuple[str, int]:
    """A group's kind: its first source's name without block numbers, and its size."""
    return re.sub(r"\d+", "#", group.sources[0] if group.sources else ""), group.size


def uniform_keep(groups, units: list, keep: list, floors: list, steps: list,
                 prior: list | None, down: bool, cost=None,
                 budget: float | None = None) -> list[np.ndarray]:
    """``keep`` with every group of a kind at one count (see the module docstring).

    Args:
        groups: The ``ChannelGroup``s.
        units: Per group, one score per channel.
        keep: Per group, the keep-mask the ranking chose.
        floors: Per group, the fewest channels it may keep.
        steps: Per group, the multiple its count must be (or all of it).
        prior: Per group, the keep-mask in force (its removed channels stay removed), or None.
        down: Round down (a budget), else to the nearest.
        cost: With ``budget``, the budget's cost of ``{group index: keep-mask}``
            (``tfprune.pruning.cost.KeepCost``): the counts then start at the
            nearest step and kinds lose a step at a time, the one losing the
            least score per unit of cost saved first, until the cost fits, so a
            kind of few large channels (a block's two query groups) does not
            take the whole budget's slack at once.
        budget: The counted budget's limit.
    """
    kinds: dict[tuple, list[int]] = {}
    for position, group in enumerate(groups):
        kinds.setdefault(kind_of(group), []).append(position)
    kinds = {kind: members for kind, members in kinds.items() if len(members) > 1}
    counts = {}
    for kind, members in kinds.items():
        mean = float(np.mean([keep[i].sum() for i in members]))
        step = math.lcm(*(steps[i] for i in members))
        rounding = round if (budget is not None or not down) else math.floor
        counts[kind] = _allowed(members, rounding(mean / step) * step, groups, floors, prior)
    orders = {i: _best_first(units[i], None if prior is None else prior[i])
              for members in kinds.values() for i in members}
    result = _apply(keep, kinds, counts, orders, groups)
    if budget is None or cost is None:
        return result
    current = cost({g.index: mask for g, mask in zip(groups, result, strict=True)})
    while current > budget:
        best = None
        for kind, members in kinds.items():
            step = math.lcm(*(steps[i] for i in members))
            lower = _allowed(members, counts[kind] - step, groups, floors, prior)
            if lower >= counts[kind]:
                continue
            trial = _apply(result, {kind: members}, {kind: lower}, orders, groups)
            saved = current - cost({g.index: m for g, m in zip(groups, trial, strict=True)})
            lost = sum(float(np.sum(np.asarray(units[i])[orders[i][lower:counts[kind]]]))
                       for i in members)
            if saved > 0 and (best is None or lost / saved < best[0]):
                best = (lost / saved, kind, lower, trial, current - saved)
        if best is None:  # every kind at its floor: the ranking's own search decides
            break
        _, kind, counts[kind], result, current = best
    return result


def _allowed(members, count: int, groups, floors, prior) -> int:
    """``count`` within the members' size, floors and prior kept counts."""
    size = groups[members[0]].size
    count = size if count >= size else count
    count = max(count, max(floors[i] for i in members), 1)
    if prior is not None:
        count = min(count, min(int(prior[i].sum()) for i in members))
    return count


def _best_first(scores, allowed) -> np.ndarray:
    """The channels a group may keep, best-scored first."""
    candidates = np.flatnonzero(np.ones(len(scores), bool) if allowed is None
                                else np.asarray(allowed, bool))
    return candidates[np.argsort(-np.asarray(scores)[candidates], kind="stable")]


def _apply(keep: list, kinds: dict, counts: dict, orders: dict, groups) -> list:
    """``keep`` with each kind's members keeping their ``counts[kind]`` best channels."""
    result = list(keep)
    for kind, members in kinds.items():
        for i in members:
            mask = np.zeros(groups[i].size, bool)
            mask[orders[i][:counts[kind]]] = True
            result[i] = mask
    return result
