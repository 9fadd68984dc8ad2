"""Per-layer ratio targets: each named channel group loses its own fraction.

``make_plan`` with ``LayerRatios`` (``{layer name: fraction removed}``, by hand
or from ``tfprune.pruning.sensitivity``) keeps each group's best-scored channels.
"""

from __future__ import annotations

import numpy as np

from tfprune.graph.channels import ChannelGraph
from tfprune.plans.pruning_plan import PlanError
from tfprune.pruning.rounding import allowed_counts


def _rounded(kept: int, floor: int, size: int, round_to: int) -> int:
    """``kept`` rounded down to a count ``round_keep`` allows.

    That is a multiple of ``round_to`` at or above ``floor``, or all; the
    smallest allowed count if none is below ``kept``.
    """
    if round_to == 1 or kept == size:
        return kept
    allowed = allowed_counts(size, floor, size, round_to)
    return max([count for count in allowed if count <= kept] or [min(allowed)])


def ratio_keep(graph: ChannelGraph, units: list, floors: list, ratios: dict,
               previous: list | None, round_to: int) -> list[np.ndarray]:
    """Keep-masks removing each named group's own ratio of its lowest-scored channels.

    Args:
        graph: The model's ``ChannelGraph``.
        units: Per group, one score per channel.
        floors: Per group, the fewest channels it keeps.
        ratios: ``{layer name: fraction removed}``; a group is named by any of
            its members; groups not named keep their channels.
        previous: Per group, the keep-mask in force (removed channels stay removed).
        round_to: Kept counts are rounded down to a multiple of it (or all).

    Raises:
        PlanError: For a name in no group or a ratio outside [0, 1).
    """
    by_member = {member: i for i, g in enumerate(graph.groups) for member in g.members}
    unknown = sorted(set(ratios) - set(by_member))
    if unknown:
        raise PlanError(f"per-layer ratios name {unknown}, which are in no prunable channel "
                        "group; use the names tfprune groups / channel_groups lists. (A budget "
                        "target is one of {'flops': F}, {'params': P}, {'latency_ms': L} or "
                        "{'tflite_kb': S}.)")
    wanted = [0.0] * len(graph.groups)
    for name, ratio in ratios.items():
        if not 0 <= float(ratio) < 1:
            raise PlanError(f"ratio of {name!r} must be in [0, 1), got {ratio!r}.")
        wanted[by_member[name]] = max(wanted[by_member[name]], float(ratio))
    keep = []
    for i, (group, scores, floor) in enumerate(zip(graph.groups, units, floors, strict=True)):
        prior = previous[i] if previous is not None else np.ones(group.size, bool)
        kept = max(floor, group.size - int(round(wanted[i] * group.size)))
        kept = min(_rounded(kept, floor, group.size, round_to), int(prior.sum()))
        values = np.where(prior, np.asarray(scores, np.float64), -np.inf)
        mask = np.zeros(group.size, bool)
        mask[np.argsort(-values, kind="stable")[:kept]] = True
        keep.append(mask)
    return keep
