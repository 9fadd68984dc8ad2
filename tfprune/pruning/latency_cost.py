"""Latency as a function of a plan: per-layer times, measured at a few channel counts.

A ``LatencyTable`` holds what was measured (``tfprune.export.latency_model``
measures it in LiteRT; tests give synthetic times): for each kernel layer
call, its time at a small grid of (input channels, output channels), and the
time of the whole dense model. ``KeepLatency`` turns it into the cost of
keep-masks that the plan searches use (``budget_keep``, ``knapsack_keep``):

    latency(keep) = residual + sum over timed calls of t_call(in kept, out kept)

where ``t_call`` interpolates its grid bilinearly (linearly past its ends,
never below 0), and the residual is the dense model's time minus its calls'
dense times (what the timed layers do not account for: activations,
pooling, additions, the interpreter's own cost). A call's channel counts are
exact linear functions of the groups' kept counts, read from the channel
analysis's layouts: ``count = tiles * (fixed + sum of the kept counts of the
groups it concatenates)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.graph.channels import ChannelGraph


@dataclasses.dataclass
class ChannelCount:
    """A tensor's channel count as a function of the groups' kept counts.

    Attributes:
        fixed: Channels no group removes.
        groups: ``{group index: how many times its channels appear}``.
        tiles: How many times the whole layout repeats (a flattened feature map).
    """

    fixed: int
    groups: dict[int, int]
    tiles: int = 1

    @classmethod
    def of(cls, graph: ChannelGraph, layout) -> ChannelCount | None:
        """The count of a layout (None for a tensor the analysis has no layout of)."""
        if layout is None:
            return None
        fixed, groups = 0, {}
        for space, size in layout.spaces:
            group = graph.group_of_space(space)
            if group is None:
                fixed += int(size)
            else:
                groups[group.index] = groups.get(group.index, 0) + 1
        return cls(fixed, groups, int(np.prod(layout.tiles)))

    def __call__(self, kept: dict[int, int]) -> int:
        """The count with ``kept[g]`` channels of each group ``g``."""
        return self.tiles * (self.fixed + sum(times * int(kept[g])
                                              for g, times in self.groups.items()))

    @property
    def prunable(self) -> bool:
        """Whether any group changes it."""
        return bool(self.groups)


@dataclasses.dataclass
class CallTimes:
    """One call's measured times on a grid of channel counts.

    Attributes:
        name: The call's name (``ChannelGraph.calls``).
        in_counts: Input channel counts measured, ascending (the dense count last).
        out_counts: Output channel counts measured, ascending.
        ms: ``ms[i][j]``: milliseconds at ``(in_counts[i], out_counts[j])``.
    """

    name: str
    in_counts: list[int]
    out_counts: list[int]
    ms: list[list[float]]

    def at(self, inputs: float, outputs: float) -> float:
        """Bilinear interpolation on the grid, linear past its ends, at least 0."""
        grid = np.asarray(self.ms, np.float64)
        along_out = [_interpolate(self.out_counts, row, outputs) for row in grid]
        return max(0.0, _interpolate(self.in_counts, np.asarray(along_out), inputs))


def _interpolate(points: list[int], values: np.ndarray, x: float) -> float:
    """Piecewise-linear through ``(points, values)``, extended linearly past both ends."""
    if len(points) == 1:
        return float(values[0])
    points = np.asarray(points, np.float64)
    if x <= points[0] or x >= points[-1]:
        i = 0 if x <= points[0] else len(points) - 2
        slope = (values[i + 1] - values[i]) / (points[i + 1] - points[i])
        return float(values[i] + slope * (x - points[i]))
    return float(np.interp(x, points, values))


@dataclasses.dataclass
class LatencyTable:
    """What was measured: the dense model's time and each timed call's grid.

    Attributes:
        dense_ms: The whole dense model's time.
        calls: The timed calls.
        untimed: Kernel calls that could not be timed alone (their time stays
            in the residual, constant whatever the plan).
        threads: The runtime's thread count.
    """

    dense_ms: float
    calls: list[CallTimes]
    untimed: list[str] = dataclasses.field(default_factory=list)
    threads: int = 1

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LatencyTable:
        """The inverse of ``to_dict``."""
        return cls(float(data["dense_ms"]), [CallTimes(**c) for c in data["calls"]],
                   list(data.get("untimed", [])), int(data.get("threads", 1)))


class KeepLatency:
    """Predicted latency in ms of per-group keep-masks (a cost for the plan searches).

    Args:
        graph: The model's ``ChannelGraph``.
        table: The measured ``LatencyTable``.

    Raises:
        ValueError: If the table times a call the graph does not have.
    """

    kind = "latency_ms"

    def __init__(self, graph: ChannelGraph, table: LatencyTable):
        self.graph, self.table = graph, table
        known = {call.name for call in graph.calls}
        missing = [c.name for c in table.calls if c.name not in known]
        if missing:
            raise ValueError(f"the latency table times calls this model does not have: "
                             f"{missing}; it was measured on another model.")
        self.counts = {c.name: (ChannelCount.of(graph, graph.layer_inputs.get(c.name)),
                                ChannelCount.of(graph, graph.layer_outputs.get(c.name)))
                       for c in table.calls}
        self.sizes = {g.index: g.size for g in graph.groups}
        dense = self.from_counts(self.sizes, residual=0.0)
        self.residual = table.dense_ms - dense

    def from_counts(self, kept: dict[int, int], residual: float | None = None) -> float:
        """The latency with ``kept[g]`` channels kept in each group ``g``."""
        total = self.residual if residual is None else residual
        return float(total + self.calls_time(self.table.calls, kept))

    def calls_time(self, calls: list[CallTimes], kept: dict[int, int]) -> float:
        """The predicted time of some timed calls, with ``kept[g]`` channels in each group."""
        total = 0.0
        for times in calls:
            inputs, outputs = self.counts[times.name]
            total += times.at(inputs(kept) if inputs else times.in_counts[-1],
                              outputs(kept) if outputs else times.out_counts[-1])
        return total

    def __call__(self, keep: dict[int, np.ndarray]) -> float:
        """The latency with ``{group index: keep-mask}`` applied."""
        return self.from_counts({g: int(np.count_nonzero(keep.get(g, np.ones(size, bool))))
                                 for g, size in self.sizes.items()})
