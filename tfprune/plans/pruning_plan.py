"""``PruningPlan``: which channels (or weights) to keep.

The plan is the hand-off between the pruning core (which makes plans) and
slimming (which applies them). A plan saves to ``.npz`` + ``.json`` and
replays on a fresh model of the same architecture (``check_plan_fits``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tfprune.storage import StorageError, read_pair, stem, write_pair


class PlanError(ValueError):
    """A plan cannot be made or applied as asked."""


class PruningPlan:
    """Keep-masks per channel group (structured) or per layer kernel (unstructured).

    Attributes:
        granularity: ``"filter"`` (masks per group) or ``"weight"`` (per kernel).
        groups: The groups' descriptions (``ChannelGroup.to_dict()``), structured only.
        keep: ``{key: boolean array}``; keys are group indices (as strings) or layer names.
        scores: ``{key: float array}``: the scores the masks were made from.
        history: One entry per round: ``{"round", "target", "removed", "total"}``.
        settings: How the plan was made (scope, reduction, normalization, min_keep, measure).
        blocks: The transformer blocks a depth plan removes (``axes`` with
            ``"depth"``; ``tfprune.pruning.depth``): ``{"names": [block path,
            ...], "keep": [bool per block], "scores": [float per block]}``;
            None when no block is considered.
    """

    def __init__(self, granularity, groups, keep, scores, history=(), settings=None,
                 blocks=None):
        self.granularity = granularity
        self.groups = [dict(g) for g in groups]
        self.keep = {str(k): np.asarray(v, bool) for k, v in keep.items()}
        self.scores = {str(k): np.asarray(v, np.float64) for k, v in scores.items()}
        self.history = [dict(h) for h in history]
        self.settings = dict(settings or {})
        self.blocks = None if blocks is None else {
            "names": list(blocks["names"]), "keep": [bool(k) for k in blocks["keep"]],
            "scores": [float(v) for v in blocks["scores"]]}

    @property
    def removed_blocks(self) -> list[int]:
        """Indices of the transformer blocks the plan removes (none without depth)."""
        return [] if self.blocks is None else [
            index for index, kept in enumerate(self.blocks["keep"]) if not kept]

    @classmethod
    def from_groups(cls, groups, keep, scores=None, history=(), settings=None,
                    blocks=None) -> PruningPlan:
        """A structured plan over analysed channel groups.

        Args:
            groups: The ``ChannelGroup`` list (a ``ChannelGraph``'s ``groups``).
            keep: Per group, in order, its boolean keep-mask.
            scores: Per group, in order, its channel scores (None: none kept).
            history: The rounds so far.
            settings: How the plan was made.
            blocks: The blocks a depth plan removes (see the class), or None.
        """
        def by_index(values):
            return {str(g.index): v for g, v in zip(groups, values, strict=True)}

        return cls("filter", [g.to_dict() for g in groups], by_index(keep),
                   by_index(scores) if scores is not None else {}, history, settings, blocks)

    @property
    def total(self) -> int:
        """Prunable channels (or weights)."""
        return int(sum(mask.size for mask in self.keep.values()))

    @property
    def removed(self) -> int:
        """Channels (or weights) the plan removes."""
        return int(sum((~mask).sum() for mask in self.keep.values()))

    @property
    def fraction_removed(self) -> float:
        """``removed / total``."""
        return self.removed / max(self.total, 1)

    def kept_per_layer(self) -> dict[str, list[int]]:
        """``{layer: [kept, original]}`` for every source layer (structured) or kernel."""
        if self.granularity == "weight":
            return {name: [int(m.sum()), int(m.size)] for name, m in self.keep.items()}
        return {name: [int(self.keep[str(g["index"])].sum()), g["size"]]
                for g in self.groups for name in g["sources"]}

    def checksum(self) -> str:
        """12 hex digits of SHA-256 over the keep-masks: equal plans keep equal channels.

        Scores do not enter it, so replicas or workers whose scores differ in their
        last bits but keep the same channels have the same checksum.
        """
        digest = hashlib.sha256(self.granularity.encode())
        for key in sorted(self.keep, key=lambda k: (len(k), k)):
            mask = self.keep[key]
            digest.update(f"{key}:{mask.size}:".encode() + np.packbits(mask).tobytes())
        if self.removed_blocks:
            digest.update(f"blocks:{self.removed_blocks}".encode())
        return digest.hexdigest()[:12]

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``path.npz`` (masks, scores) and ``path.json`` (groups, history, settings)."""
        description = {"granularity": self.granularity, "groups": self.groups,
                       "history": self.history, "settings": self.settings}
        if self.blocks is not None:
            description["blocks"] = self.blocks
        return write_pair(path, {"keep": self.keep, "score": self.scores}, description)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        """Reads a plan written by ``save`` (the ``.npz``, the ``.json`` or their stem)."""
        tables, description = read_pair(path, "pruning plan")
        try:
            return cls(description["granularity"], description["groups"], tables["keep"],
                       tables["score"], description["history"], description["settings"],
                       description.get("blocks"))
        except KeyError as error:
            raise StorageError(f"{stem(path)}.json / .npz: not a pruning plan (no {error}); "
                               "write it again.") from None


def check_plan_fits(graph, plan: PruningPlan) -> None:
    """Raises PlanError unless the plan's groups are the graph's (same sources and sizes).

    Args:
        graph: The model's ``ChannelGraph``.
        plan: A structured plan.
    """
    mine = [(g.sources, g.size) for g in graph.groups]
    theirs = [(g["sources"], g["size"]) for g in plan.groups]
    if mine != theirs:
        raise PlanError(
            f"the plan was made for another architecture: its {len(theirs)} channel groups "
            f"do not match the model's {len(mine)} (first sources {theirs[:1]} vs {mine[:1]})."
        )
