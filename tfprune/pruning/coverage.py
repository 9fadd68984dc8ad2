"""What pruning can reach in a model: channels kept whole (and why), the removable share.

Pruning removes only the channels of the prunable groups. A Reshape folding
channels into time, a Lambda, a normalization after Flatten or a model output
keep the channels around them whole, and a user would otherwise learn it only
when the slimmed model disappoints. ``coverage`` says it up front: the channel
spaces kept whole with their reasons, and the largest share of the parameters
and FLOPs that pruning every group down to one channel would remove.
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune.graph.channels import ChannelGraph, graph_for


@dataclasses.dataclass
class Coverage:
    """What pruning can reach in a model.

    Attributes:
        groups: Prunable channel groups.
        channels: Prunable channels in them.
        kept_whole: ``(layers, channels, reason)`` per channel space kept whole.
        params: The largest fraction of the parameters pruning can remove (or None
            when it could not be computed).
        flops: The same for FLOPs.
    """

    groups: int
    channels: int
    kept_whole: list
    params: float | None
    flops: float | None

    def table(self) -> str:
        """A short Markdown report: the removable share, then the channels kept whole."""
        share = ("" if self.params is None else
                 f"; pruning can remove at most {self.params:.1%} of the parameters and "
                 f"{self.flops:.1%} of the FLOPs")
        lines = [f"{self.groups} prunable channel groups, {self.channels:,} channels{share}."]
        if self.kept_whole:
            lines += ["", "| kept whole | channels | why |", "| --- | --- | --- |"]
            lines += [f"| {', '.join(layers)} | {size} | {reason} |"
                      for layers, size, reason in self.kept_whole]
        return "\n".join(lines)


def coverage(model: keras.Model, graph: ChannelGraph | None = None, ignored_layers=()
             ) -> Coverage:
    """The ``Coverage`` of ``model`` (its channel graph built unless given)."""
    from tfprune.importance import score
    from tfprune.pruning.plan import PlanError, make_plan
    from tfprune.pruning.stats import pruning_summary

    graph = graph or graph_for(model, ignored_layers)
    total = sum(group.size for group in graph.groups)
    params = flops = None
    removable = total - len(graph.groups)
    if removable > 0:
        try:
            plan = make_plan(model, score(model, "magnitude"), removable / total, min_keep=0.0,
                             ignored_layers=ignored_layers, gqa=graph.gqa)
        except (PlanError, ValueError):
            plan = None
        if plan is not None:
            summary = pruning_summary(model, plan)
            params = 1 - summary["params_after"] / max(1, summary["params_before"])
            flops = 1 - summary["flops_after"] / max(1, summary["flops_before"])
    return Coverage(len(graph.groups), total, graph.kept_whole(), params, flops)
