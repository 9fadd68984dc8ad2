"""``RankingOptions``: how ``make_plan`` ranks channels, written once.

``make_plan``, the ``Pruner``, ``PruningCallback`` and the ``prune`` section of
a config all take these options; each builds one ``RankingOptions`` from them,
so their names, defaults and checks live here only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.graph.channels import GQA_MODES
from tfprune.plans.pruning_plan import PlanError
from tfprune.pruning.axes import check_axes

SCOPES = ("global", "layer")
#: How a group's member scores (rows) combine into one score per channel.
REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max,
              "first": lambda rows, axis: np.take(rows, 0, axis=axis)}
#: Per-group score normalizations before a global ranking.
NORMALIZATIONS = {
    "none": lambda s: s,
    "l2": lambda s: s / (np.linalg.norm(s) or 1.0),
    "max": lambda s: s / (np.max(np.abs(s)) or 1.0),
    "sum": lambda s: s / (np.sum(np.abs(s)) or 1.0),
}


@dataclasses.dataclass(frozen=True)
class RankingOptions:
    """How channels are ranked and how far each group may go.

    Attributes:
        scope: ``"global"`` ranks all channels together on raw scores (the
            paper); ``"layer"`` removes the same fraction from every group.
        min_keep: No group keeps fewer than ``max(1, ceil(min_keep * size))``.
        reduction: How a group's member scores combine: sum, mean, max or first
            (the first source layer's). A measure's own ``group_reduction``
            (random, uniform) takes precedence.
        normalization: Per-group score normalization before a global ranking:
            none (the paper), l2, max, sum.
        round_to: Every group keeps a multiple of this many channels (or all of
            them), the best-scored ones; the total removed is then as close to
            the target as the rounding allows (``tfprune.pruning.rounding``).
            Structured plans only; 1 (default) does not round. Whatever the
            target, a grouped convolution's channels go evenly from each of its
            groups and GroupNormalization's in whole groups (rounded to the
            nearest such count; for a budget, down, so it still holds).
        ignored_layers: Layers (or keras.ops nodes) the channel analysis leaves alone.
        uniform: Every group of a kind (the same layer name once block numbers
            are left out, and the same size: each decoder block's query groups,
            each block's MLP units) keeps the same count, the kind's mean
            (``tfprune.pruning.uniform``). A uniform plan slims a keras-hub
            backbone into its own class with a smaller config. Not with a
            measured budget (latency, file size).
        gqa: How grouped-query attention loses heads: ``"groups"`` (whole
            query groups: a key/value head with its query heads) or
            ``"heads"`` (query heads, the same count from every group; the
            key/value heads stay). ``tfprune.graph.channels.ChannelGraph``.
        axes: The axes a plan may shorten, of ``("heads", "mlp", "hidden",
            "depth")`` (``tfprune.pruning.axes``); the other groups are kept
            whole, and a fraction target is of the channels on these axes.
            ``"depth"`` removes whole transformer blocks
            (``tfprune.pruning.depth``). None (default): every channel group,
            no block.
    """

    scope: str = "global"
    min_keep: float = 0.05
    reduction: str = "sum"
    normalization: str = "none"
    round_to: int = 1
    ignored_layers: tuple = ()
    uniform: bool = False
    gqa: str = "groups"
    axes: tuple | None = None

    def __post_init__(self):
        object.__setattr__(self, "ignored_layers", tuple(self.ignored_layers))
        object.__setattr__(self, "axes", check_axes(self.axes))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names (``make_plan``'s, the Pruner's, the callback's keywords)."""
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_keywords(cls, caller: str, ranking: RankingOptions | None,
                      options: dict) -> RankingOptions:
        """``ranking``, or the options given as keywords (not both).

        Raises:
            TypeError: For both, or a keyword that is no ranking option.
        """
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise TypeError(f"{caller}: unexpected keyword arguments {unknown}; the ranking "
                            f"options are {list(cls.names())}.")
        if ranking is not None and options:
            raise TypeError(f"{caller}: give ranking=RankingOptions(...) or the options "
                            f"{sorted(options)}, not both.")
        return ranking if ranking is not None else cls(**options)

    @classmethod
    def from_mapping(cls, options: dict) -> RankingOptions:
        """The options among ``options`` (a config section, keyword arguments); others ignored."""
        return cls(**{name: options[name] for name in cls.names() if name in options})

    def given(self) -> list[str]:
        """The options set to something other than their default."""
        default = RankingOptions()
        return [name for name in self.names() if getattr(self, name) != getattr(default, name)]

    def check(self, reduction: str | None = None) -> None:
        """Raises PlanError naming the first bad option.

        Args:
            reduction: The reduction in force, when a measure's own replaces ours.
        """
        reduction = reduction or self.reduction
        if self.scope not in SCOPES:
            raise PlanError(f"scope must be one of {list(SCOPES)}, got {self.scope!r}.")
        if not 0 <= self.min_keep <= 1:
            raise PlanError(f"min_keep must be in [0, 1], got {self.min_keep}.")
        if reduction not in REDUCTIONS:
            raise PlanError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}.")
        if self.gqa not in GQA_MODES:
            raise PlanError(f"gqa must be one of {list(GQA_MODES)}, got {self.gqa!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise PlanError(f"normalization must be one of {sorted(NORMALIZATIONS)}, "
                            f"got {self.normalization!r}.")

    def as_dict(self) -> dict:
        """The options as keyword arguments."""
        return {name: getattr(self, name) for name in self.names()}
