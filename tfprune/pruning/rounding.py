"""Channel rounding: every group keeps a multiple of ``round_to`` channels (or all of them).

Hardware runs channel counts that are multiples of its vector width faster
(XNNPACK, GPUs, NPUs). ``round_keep`` takes the keep-masks a plan chose
without rounding and moves each group's kept count to a multiple of
``round_to``:

1. each group's kept count goes to the nearest allowed count: a multiple of
   ``round_to`` at or above its floor, or the whole group; never more than
   it kept before this round (removed channels stay removed);
2. while the total removed is more than ``round_to / 2`` away from the
   requested count and a move brings it closer, one block of ``round_to``
   channels (a group's own step: see ``even_parts``) moves: if too few were
   removed, the group whose ``round_to`` lowest-scored kept channels have the
   lowest mean score gives them up; if too many, the group whose
   ``round_to`` best removed channels have the highest mean score gets them
   back;
3. within a group the kept channels are its best-scored ones.

So the target is met to within half a block per adjustment, as closely as
the rounding allows.

``even_parts`` then splits the groups that must be removed evenly (a grouped
convolution's parts, GroupNormalization's whole groups).
"""

from __future__ import annotations

import numpy as np


def allowed_counts(size: int, floor: int, ceiling: int, round_to: int) -> list[int]:
    """Kept counts a group may take: multiples of ``round_to`` in [floor, ceiling], or all."""
    counts = [k for k in range(round_to, ceiling + 1, round_to) if k >= floor]
    if ceiling == size and size not in counts:
        counts.append(size)
    return counts or [ceiling]


def _nearest(value: int, allowed: list[int]) -> int:
    return min(allowed, key=lambda k: (abs(k - value), -k))


def round_keep(units: list[np.ndarray], keep: list[np.ndarray], floors: list[int], count: int,
               round_to: int | list[int], previous: list[np.ndarray] | None = None
               ) -> list[np.ndarray]:
    """Keep-masks with every group's kept count rounded (see the module docstring).

    Args:
        units: Per group, one score per channel (higher is more important).
        keep: Per group, the unrounded boolean keep-mask.
        floors: Per group, the fewest channels it may keep.
        count: Channels to remove in total.
        round_to: The block size, >= 1, or one per group.
        previous: Per group, the keep-mask in force before this round, or None.

    Returns:
        Per group, the rounded boolean keep-mask.
    """
    steps = [round_to] * len(units) if isinstance(round_to, int) else list(round_to)
    if min(steps, default=1) < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}.")
    if set(steps) <= {1}:
        return keep
    ceilings = [int(p.sum()) if p is not None else s.size
                for s, p in zip(units, previous or [None] * len(units), strict=True)]
    allowed = [allowed_counts(s.size, f, c, step)
               for s, f, c, step in zip(units, floors, ceilings, steps, strict=True)]
    kept = [_nearest(int(k.sum()), a) for k, a in zip(keep, allowed, strict=True)]
    orders = [_ranking(s, p) for s, p in zip(units, previous or [None] * len(units),
                                             strict=True)]
    total = sum(s.size for s in units)
    excess = total - sum(kept) - count  # > 0: removed too many
    while abs(excess) > min(steps) / 2:
        before = list(kept)
        if not _move_block(units, orders, kept, allowed, shrink=excess < 0, limit=abs(excess)):
            break
        moved = total - sum(kept) - count
        if abs(moved) >= abs(excess):  # the block overshoots: the closest is where we were
            kept[:] = before
            break
        excess = moved
    masks = []
    for s, order, k in zip(units, orders, kept, strict=True):
        mask = np.zeros(s.size, bool)
        mask[order[:k]] = True
        masks.append(mask)
    return masks


def _ranking(scores: np.ndarray, previous) -> np.ndarray:
    """Channel indices best first; channels removed before come last."""
    values = np.asarray(scores, np.float64)
    if previous is not None:
        values = np.where(previous, values, -np.inf)
    return np.argsort(-values, kind="stable")


def _move_block(units, orders, kept, allowed, shrink: bool, limit: float) -> bool:
    """Moves one block in the group where it costs least; False when none can move.

    Only blocks smaller than ``2 * limit`` (the distance to the requested
    count, doubled) may move: a larger one would land farther away.
    """
    best, best_cost = None, None
    for g, (s, order, k) in enumerate(zip(units, orders, kept, strict=True)):
        options = [a for a in allowed[g] if (a < k if shrink else a > k)]
        if not options:
            continue
        target = max(options) if shrink else min(options)
        if abs(target - k) >= 2 * limit:
            continue
        block = order[target:k] if shrink else order[k:target]
        cost = float(np.mean(s[block])) if block.size else 0.0
        cost = cost if shrink else -cost  # shrink: lowest scores; grow: highest scores
        if best_cost is None or cost < best_cost:
            best, best_cost = (g, target), cost
    if best is None:
        return False
    kept[best[0]] = best[1]
    return True


def even_parts(units: list[np.ndarray], keep: list[np.ndarray], floors: list[int],
               splits: list[tuple[int, int]], round_to: int = 1,
               previous: list[np.ndarray] | None = None, down: bool = False) -> list[np.ndarray]:
    """Keep-masks that split every constrained group evenly (grouped convs, GroupNorm).

    A group with ``(parts, atom)`` (``ChannelGroup.parts`` / ``.atom``) keeps the
    same number of whole atoms in each of its ``parts`` equal contiguous
    parts: its kept count becomes a multiple of ``parts * atom`` (and of
    ``round_to``) at or above its floor, or the whole group, the one nearest
    to what ``keep`` kept (``down``: the nearest at or below it, so a budget
    still holds), never more than it kept before; each part keeps its
    best-scored atoms (an atom's score is the sum of its channels'). Other
    groups are returned as they are.

    Args:
        units: Per group, one score per channel.
        keep: Per group, the boolean keep-mask chosen without the split.
        floors: Per group, the fewest channels it may keep.
        splits: Per group, ``(parts, atom)``.
        round_to: The plan's ``round_to``.
        previous: Per group, the keep-mask before this round, or None.
        down: Round the kept count down rather than to the nearest.
    """
    result = []
    for g, (scores, mask, floor, (parts, atom)) in enumerate(
            zip(units, keep, floors, splits, strict=True)):
        if parts * atom == 1:
            result.append(mask)
            continue
        prior = None if previous is None else previous[g]
        ceiling = mask.size if prior is None else int(prior.sum())
        step = int(np.lcm(parts * atom, round_to))
        allowed = allowed_counts(mask.size, floor, ceiling, step)
        kept = int(mask.sum())
        below = [k for k in allowed if k <= kept]
        kept = max(below) if down and below else _nearest(kept, allowed)
        values = np.asarray(scores, np.float64)
        if prior is not None:
            values = np.where(prior, values, -np.inf)
        atoms = values.reshape(parts, -1, atom).sum(axis=-1)  # (parts, atoms per part)
        best = np.argsort(-atoms, axis=1, kind="stable")[:, :kept // (parts * atom)]
        chosen = np.zeros(atoms.shape, bool)
        np.put_along_axis(chosen, best, True, axis=1)
        result.append(np.repeat(chosen, atom, axis=1).reshape(-1))
    return result
