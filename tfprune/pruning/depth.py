"""Depth as an axis of a plan: whole transformer blocks, chosen beside the channels.

``make_plan(..., axes=("heads", "mlp", "depth"))`` also removes whole blocks
of a keras-hub transformer (its ``transformer_layers``). The blocks are
ranked by ``block_scores`` when given (``tfprune.block_importance``: how much
each block turns its hidden states on data; the ``Pruner`` measures it on its
data), else by the sum of the measure's scores of every unit inside the block.
The lowest-ranked go first.

How many go:

- ``axes=("depth",)`` alone: a fraction ``t`` removes ``round(t * blocks)``
  blocks; ``{"params": P}`` removes the lowest-ranked blocks until the model
  fits ``P`` parameters.
- with channel axes: each side keeps ``sqrt(1 - t)``, so blocks kept times
  channels kept is ``1 - t``: ``round((1 - sqrt(1 - t)) * blocks)`` blocks go,
  and the same fraction of the chosen channels of the blocks that stay.

The plan records the blocks (``PruningPlan.blocks``). Masked (``apply_plan``,
training under ``PruningCallback``), a removed block's writes to the residual
stream (its attention and MLP output projections, ``ChannelGraph.stream_writers``)
are zero, so a pre-norm block (Gemma, Llama, Mistral, Qwen) passes its input on
unchanged. ``tfprune.slim`` builds the model without those blocks
(``tfprune.slimming.depth.drop_blocks``), then removes the channels.
"""

from __future__ import annotations

import math

import numpy as np

from tfprune.budget_targets import Budget
from tfprune.importance.blocks import transformer_blocks
from tfprune.plans.pruning_plan import PlanError
from tfprune.pruning.targets import Fraction
from tfprune.slimming.depth import block_calls, block_names, in_block


def summed_block_scores(scores, blocks: list[set[str]], names: list[str]) -> np.ndarray:
    """Per block, the sum of the scores of every scored unit inside it.

    Raises:
        PlanError: For a block with no scored unit.
    """
    totals = []
    for calls, block in zip(blocks, names, strict=True):
        values = [np.sum(values) for name, values in scores.items() if in_block(name, calls)]
        if not values:
            raise PlanError(f"axes: depth: no score inside block {block!r}; pass "
                            "block_scores (tfprune.block_importance).")
        totals.append(float(np.sum(values)))
    return np.asarray(totals)


def checked_block_scores(block_scores, count: int) -> np.ndarray:
    """``block_scores`` as a float array of one finite value per block.

    Raises:
        PlanError: For another length or a NaN / Inf.
    """
    values = np.asarray(block_scores, np.float64).reshape(-1)
    if values.size != count:
        raise PlanError(f"block_scores: {values.size} values for a model of {count} blocks.")
    if not np.all(np.isfinite(values)):
        raise PlanError(f"block_scores: not finite at blocks "
                        f"{np.flatnonzero(~np.isfinite(values)).tolist()}.")
    return values


def block_fraction(value: float, with_channels: bool) -> float:
    """The fraction of blocks a fraction target removes (see the module docstring)."""
    return 1.0 - math.sqrt(1.0 - value) if with_channels else value


def keep_blocks(scores: np.ndarray, count: int, prior: np.ndarray | None) -> np.ndarray:
    """A keep-mask without the ``count`` lowest-scored blocks (prior removals stay removed).

    Raises:
        PlanError: If that would remove every block.
    """
    keep = np.ones(scores.size, bool) if prior is None else np.asarray(prior, bool).copy()
    count = max(count, int((~keep).sum()))
    if count >= scores.size:
        raise PlanError(f"axes: depth: removing {count} of {scores.size} blocks leaves no "
                        "block; ask for less.")
    for index in np.argsort(scores, kind="stable"):
        if (~keep).sum() >= count:
            break
        keep[index] = False
    return keep


def keep_blocks_for_params(model, scores: np.ndarray, budget: float,
                           prior: np.ndarray | None) -> np.ndarray:
    """A keep-mask removing the lowest-scored blocks until the model has ``budget`` parameters.

    Raises:
        PlanError: If even one block left is over the budget.
    """
    blocks = transformer_blocks(model)
    sizes = np.array([block.count_params() for block in blocks], np.float64)
    keep = np.ones(len(blocks), bool) if prior is None else np.asarray(prior, bool).copy()
    total = model.count_params() - sizes[~keep].sum()
    for index in np.argsort(scores, kind="stable"):
        if total <= budget:
            break
        if keep[index] and keep.sum() > 1:
            keep[index] = False
            total -= sizes[index]
    if total > budget:
        raise PlanError(f"axes: depth: {int(total)} parameters are left with one block; the "
                        f"budget is {int(budget)}.")
    return keep


def depth_masks(graph, blocks: list[set[str]], keep: np.ndarray) -> list:
    """``[(variable, mask)]`` zeroing what each removed block writes to the residual stream.

    Args:
        graph: The model's ``ChannelGraph``.
        blocks: Per block, its calls' names (``block_calls``).
        keep: Per block, whether it stays.

    Raises:
        PlanError: For a removed block that writes nothing shared with the rest.
    """
    pairs = []
    for index, (calls, kept) in enumerate(zip(blocks, keep, strict=True)):
        if kept:
            continue
        writers = graph.stream_writers(calls.__contains__)
        if not writers:
            raise PlanError(f"axes: depth: block {index} writes no channel the rest of the "
                            "model reads, so it cannot be masked out.")
        for name in writers:
            zeros = np.zeros(graph.output_size(name), bool)
            pairs += graph.handler(name).variable_masks(graph.operations[name], None, zeros)
    return pairs


def groups_inside(groups, blocks: list[set[str]], keep: np.ndarray) -> list[bool]:
    """Per channel group, whether all its members are in removed blocks."""
    removed = set().union(*(calls for calls, kept in zip(blocks, keep, strict=True)
                            if not kept))
    return [bool(removed) and all(in_block(name, removed) for name in group.members)
            for group in groups]


def plan_blocks(model, graph, scores, target, axes, block_scores, previous):
    """The blocks a plan removes, and what is left for the channels.

    Args:
        model: The model.
        graph: Its ``ChannelGraph``.
        scores: The measure's scores (summed per block without ``block_scores``).
        target: A ``Fraction`` or, with ``axes=("depth",)`` alone, a params ``Budget``.
        axes: The plan's axes, ``"depth"`` among them.
        block_scores: One score per block, or None.
        previous: The previous round's plan (its removed blocks stay removed), or None.

    Returns:
        ``(record, channel target, gone)``: the plan's ``blocks`` record
        (``{"names", "keep", "scores"}``), the target left for the channel axes
        (None without channel axes) and, per channel group, whether it lies in
        a removed block.

    Raises:
        PlanError: For another target, or block scores that do not fit.
    """
    blocks, names = block_calls(graph), block_names(model)
    values = (summed_block_scores(scores, blocks, names) if block_scores is None
              else checked_block_scores(block_scores, len(blocks)))
    prior = None if previous is None or previous.blocks is None else np.asarray(
        previous.blocks["keep"], bool)
    channel_axes = [axis for axis in axes if axis != "depth"]
    if isinstance(target, Fraction):
        fraction = block_fraction(target.value, bool(channel_axes))
        keep = keep_blocks(values, round(fraction * len(blocks)), prior)
        channel_target = Fraction(fraction) if channel_axes else None
    elif isinstance(target, Budget) and target.kind == "params" and not channel_axes:
        keep, channel_target = keep_blocks_for_params(model, values, target.value, prior), None
    else:
        raise PlanError(f"axes: depth takes a fraction target, or a params budget with "
                        f"axes=('depth',) alone; got {target!r} with axes {list(axes)}.")
    record = {"names": names, "keep": keep.tolist(), "scores": values.tolist()}
    return record, channel_target, groups_inside(graph.groups, blocks, keep)
