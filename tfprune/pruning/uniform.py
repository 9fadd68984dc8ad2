"""Uniform plans: the same kept count in every block, per kind of channel group.

``make_plan(..., uniform=True)``. Groups of one kind are those whose first
source has the same name once block numbers are left out
(``decoder_block_0/attention/query_groups`` and
``decoder_block_1/attention/query_groups``) and the same size. After the
ranking has chosen how many channels each group keeps, every group of a kind
keeps the kind's mean count (rounded to the group's step, ``round_to`` and
its parts; down for a budget, so the budget still holds), its best-scored
channels. A uniform plan slims a keras-hub backbone into its own class
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
                 prior: list | None, down: bool) -> list[np.ndarray]:
    """``keep`` with every group of a kind at the kind's mean kept count (module docstring).

    Args:
        groups: The ``ChannelGroup``s.
        units: Per group, one score per channel.
        keep: Per group, the keep-mask the ranking chose.
        floors: Per group, the fewest channels it may keep.
        steps: Per group, the multiple its count must be (or all of it).
        prior: Per group, the keep-mask in force (its removed channels stay removed), or None.
        down: Round down (a budget), else to the nearest.
    """
    kinds: dict[tuple, list[int]] = {}
    for position, group in enumerate(groups):
        kinds.setdefault(kind_of(group), []).append(position)
    result = list(keep)
    for members in kinds.values():
        if len(members) < 2:
            continue
        mean = float(np.mean([keep[i].sum() for i in members]))
        step = math.lcm(*(steps[i] for i in members))
        size = groups[members[0]].size
        count = (math.floor if down else round)(mean / step) * step
        count = size if count >= size else count
        count = max(count, max(floors[i] for i in members), 1)
        if prior is not None:
            count = min(count, min(int(prior[i].sum()) for i in members))
        for i in members:
            allowed = np.ones(size, bool) if prior is None else np.asarray(prior[i], bool)
            candidates = np.flatnonzero(allowed)
            best = candidates[np.argsort(-np.asarray(units[i])[candidates], kind="stable")]
            mask = np.zeros(size, bool)
            mask[best[:count]] = True
            result[i] = mask
    return result
