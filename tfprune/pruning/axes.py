"""Which axes of a transformer a plan may shorten: attention heads, MLP width, hidden width.

``make_plan(..., axes=("heads",))`` prunes only the attention heads (whole
heads, query groups, or query heads: ``gqa``); ``("mlp",)`` only the MLP
units. Every other group is kept whole. A group's axis is read from its
first source: an attention layer's head unit (``.../heads``,
``.../query_groups``, ``.../query_heads``) is ``heads``; a group whose members
sit in more than one numbered block, or in one and outside it (the residual
stream, from the embedding into the blocks), is ``hidden``; any other is
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
    blocks = [_block_of(member) for member in group.members]
    inside = {block for block in blocks if block}
    # the residual stream crosses blocks, or enters one from outside (an embedding)
    return "hidden" if len(inside) > 1 or (inside and None in blocks) else "mlp"


def _block_of(name: str) -> str | None:
    """The path of the numbered block a layer sits in: up to its last numbered parent.

    ``gemma_backbone_1/decoder_block_0/attention`` is in
    ``gemma_backbone_1/decoder_block_0``; ``token_embedding`` is in none.
    """
    parents = name.split("/")[:-1]
    numbered = [i for i, part in enumerate(parents) if re.search(r"\d+$", part)]
    return "/".join(parents[:numbered[-1] + 1]) if numbered else None


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
