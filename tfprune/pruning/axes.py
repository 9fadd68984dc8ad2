"""Which axes of a transformer a plan may shorten: attention heads, MLP width, hidden width.

``make_plan(..., axes=("heads",))`` prunes only the attention heads (whole
heads, query groups, or query heads: ``gqa``); ``("mlp",)`` only the MLP
units. Every other group is kept whole. A group's axis is read from its
first source: an attention layer's head unit (``.../heads``,
``.../query_groups``, ``.../query_heads``) is ``heads``; a group whose members
sit in more than one block (the residual stream) is ``hidden``; any other is
``mlp``. ``depth`` is not a channel axis: blocks are ranked and removed by
``tfprune.block_importance`` and ``tfprune.drop_blocks``.
"""

from __future__ import annotations

import re

from tfprune.plans.pruning_plan import PlanError

#: The axes ``axes=`` names; depth is refused with where to find it.
AXES = ("heads", "mlp", "hidden", "depth")
#: Inner units of attention layers: the ``heads`` axis.
HEAD_UNITS = ("heads", "query_groups", "query_heads")


def axis_of(group) -> str:
    """``heads``, ``hidden`` or ``mlp``: the axis a channel group shortens."""
    source = group.sources[0] if group.sources else ""
    if source.rsplit("/", 1)[-1] in HEAD_UNITS:
        return "heads"
    blocks = {re.match(r"(.*?\d+)/", name).group(1) for name in group.members
              if re.match(r"(.*?\d+)/", name)}
    return "hidden" if len(blocks) > 1 else "mlp"


def check_axes(axes) -> tuple[str, ...] | None:
    """``axes`` as a tuple (None: every group may be pruned).

    Raises:
        PlanError: For an unknown axis, or ``depth`` (which no plan removes).
    """
    if axes is None:
        return None
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [axis for axis in axes if axis not in AXES]
    if unknown or not axes:
        raise PlanError(f"axes must be a non-empty list of {list(AXES[:3])}, got {list(axes)}.")
    if "depth" in axes:
        raise PlanError("axes: depth is not a channel axis; rank the blocks with "
                        "tfprune.block_importance and remove them with tfprune.drop_blocks.")
    return axes


def axis_floors(groups, floors: list[int], axes) -> list[int]:
    """``floors`` with every group outside ``axes`` kept whole."""
    if axes is None:
        return floors
    return [floor if axis_of(group) in axes else group.size
            for group, floor in zip(groups, floors, strict=True)]
