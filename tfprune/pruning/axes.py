"""Which axes of a transformer a plan may shorten: attention heads, MLP width, hidden width.

``make_plan(..., axes=("heads",))`` prunes only the attention heads (whole
heads, query groups, or query heads: ``gqa``); ``("mlp",)`` only the MLP
units. Every other group is kept whole. A group's axis is read from its
first source: an attention layer's head unit (``.../heads``,
``.../query_groups``, ``.../query_heads``) is ``heads``; a group whose members
sit in more than one block (the residual stream) is ``hidden``; any other is
``mlp``. ``depth`` removes whole transformer blocks (``tfprune.pruning.depth``);
it is not a channel axis, and is chosen only when named.
"""

from __future__ import annotations

import re

from tfprune.plans.pruning_plan import PlanError

#: The axes ``axes=`` names.
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
    """``axes`` as a tuple (None: every channel group may be pruned, no block removed).

    Raises:
        PlanError: For an unknown axis or an empty list.
    """
    if axes is None:
        return None
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [axis for axis in axes if axis not in AXES]
    if unknown or not axes:
        raise PlanError(f"axes must be a non-empty list of {list(AXES)}, got {list(axes)}.")
    return axes


def axis_floors(groups, floors: list[int], axes) -> list[int]:
    """``floors`` with every group outside ``axes`` kept whole."""
    if axes is None:
        return floors
    return [floor if axis_of(group) in axes else group.size
            for group, floor in zip(groups, floors, strict=True)]
