"""``PruningPlan``: which channels (or weights) to keep, from importance scores.

``make_plan`` reduces each group's member scores into one score per channel,
ranks channels globally (the paper) or per group, never takes a group below
its floor ``max(1, ceil(min_keep * size))`` (keeping its best-scored
channels), and hits the requested fraction exactly. The plan is the single
hand-off between pruning and slimming: it saves to ``.npz`` + ``.json`` and
replays on a fresh model of the same architecture.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from tfprune.budgets import COUNTED, MEASURED, Budget, parse_budget
from tfprune.importance.scores import check_finite, check_informative
from tfprune.pruning.groups import ChannelGraph, ChannelGroup
from tfprune.pruning.rounding import even_parts, round_keep
from tfprune.storage import StorageError, read_pair, stem, write_pair

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max,
              "first": lambda rows, axis: np.take(rows, 0, axis=axis)}
NORMALIZATIONS = {
    "none": lambda s: s,
    "l2": lambda s: s / (np.linalg.norm(s) or 1.0),
    "max": lambda s: s / (np.max(np.abs(s)) or 1.0),
    "sum": lambda s: s / (np.sum(np.abs(s)) or 1.0),
}
SCOPES = ("global", "layer")


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
    """

    def __init__(self, granularity, groups, keep, scores, history=(), settings=None):
        self.granularity = granularity
        self.groups = [dict(g) for g in groups]
        self.keep = {str(k): np.asarray(v, bool) for k, v in keep.items()}
        self.scores = {str(k): np.asarray(v, np.float64) for k, v in scores.items()}
        self.history = [dict(h) for h in history]
        self.settings = dict(settings or {})

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

    def save(self, path: str | os.PathLike) -> Path:
        """Writes ``path.npz`` (masks, scores) and ``path.json`` (groups, history, settings)."""
        description = {"granularity": self.granularity, "groups": self.groups,
                       "history": self.history, "settings": self.settings}
        return write_pair(path, {"keep": self.keep, "score": self.scores}, description)

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        """Reads a plan written by ``save`` (the ``.npz``, the ``.json`` or their stem)."""
        tables, description = read_pair(path, "pruning plan")
        try:
            return cls(description["granularity"], description["groups"], tables["keep"],
                       tables["score"], description["history"], description["settings"])
        except KeyError as error:
            raise StorageError(f"{stem(path)}.json / .npz: not a pruning plan (no {error}); "
                               "write it again.") from None


def _check_budget(target: dict) -> Budget:
    """The parsed budget target, such as ``{"flops": 1e7}``; PlanError if malformed."""
    try:
        return parse_budget(target)
    except ValueError as error:
        raise PlanError(str(error)) from None


def _is_budget(target) -> bool:
    """Whether a dict target is a budget (``{"flops": F}``...) rather than per-layer ratios."""
    return isinstance(target, dict) and bool(set(target) & set(COUNTED + MEASURED))


def _check_options(target, scope, min_keep, reduction, normalization):
    if _is_budget(target):
        _check_budget(target)
    elif not isinstance(target, dict) and not 0 <= target < 1:
        raise PlanError(f"target must be in [0, 1), got {target}: it is the fraction removed.")
    if scope not in SCOPES:
        raise PlanError(f"scope must be one of {list(SCOPES)}, got {scope!r}.")
    if not 0 <= min_keep <= 1:
        raise PlanError(f"min_keep must be in [0, 1], got {min_keep}.")
    if reduction not in REDUCTIONS:
        raise PlanError(f"reduction must be one of {sorted(REDUCTIONS)}, got {reduction!r}.")
    if normalization not in NORMALIZATIONS:
        raise PlanError(
            f"normalization must be one of {sorted(NORMALIZATIONS)}, got {normalization!r}.")


def group_scores(group: ChannelGroup, scores, reduction: str = "sum") -> np.ndarray:
    """Reduces the scores of a group's source layers into one score per channel."""
    rows = []
    for name in group.sources:
        if name not in scores:
            raise PlanError(f"no scores for layer {name!r} (a source of a channel group); "
                            f"scores cover {sorted(scores)[:8]}...")
        values = np.asarray(scores[name], np.float64)
        if values.shape != (group.size,):
            raise PlanError(f"scores of layer {name!r} have shape {values.shape}; the group "
                            f"needs {group.size} filter scores (granularity 'filter').")
        check_finite(_measure_name(scores), name, values)
        check_informative(_measure_name(scores), name, values)
        rows.append(values)
    return REDUCTIONS[reduction](np.stack(rows), axis=0)


def _measure_name(scores) -> str:
    return (getattr(scores, "measure", None) or {}).get("name", "unknown")


def _floor(size: int, min_keep: float) -> int:
    return min(size, max(1, math.ceil(min_keep * size - 1e-9)))


def _select(units: list[np.ndarray], floors: list[int], count: int, scope: str,
            previous: list[np.ndarray] | None) -> list[np.ndarray]:
    """Keep-masks removing exactly ``count`` units, lowest scores first, above the floors.

    Within a group the removed units are always its lowest-scored ones; globally
    the ``count`` lowest units that their groups' floors allow are removed.
    """
    if previous is not None:  # removed channels stay removed and go first
        units = [np.where(prev, s, -np.inf) for s, prev in zip(units, previous, strict=True)]
    limits = [s.size - f for s, f in zip(units, floors, strict=True)]
    if count > sum(limits):
        raise PlanError(f"cannot remove {count} of {sum(s.size for s in units)}: the floors "
                        f"(min_keep) leave only {sum(limits)} removable.")
    orders = [np.argsort(s, kind="stable") for s in units]
    if scope == "layer":
        quotas = _layer_quotas(units, limits, count)
    else:
        candidates = np.concatenate([s[o[:lim]] for s, o, lim in zip(units, orders, limits,
                                                                      strict=True)])
        owners = np.repeat(np.arange(len(units)), limits)
        chosen = owners[np.argsort(candidates, kind="stable")[:count]]
        quotas = np.bincount(chosen, minlength=len(units))
    keep = []
    for s, order, quota in zip(units, orders, quotas, strict=True):
        mask = np.ones(s.size, bool)
        mask[order[:quota]] = False
        keep.append(mask)
    return keep


def _layer_quotas(units, limits, count) -> list[int]:
    """Per-group removal counts proportional to size (largest remainder), within the limits."""
    total = sum(s.size for s in units)
    exact = [count * s.size / total for s in units]
    quotas = [min(int(e), lim) for e, lim in zip(exact, limits, strict=True)]
    by_remainder = sorted(range(len(units)), key=lambda g: exact[g] - int(exact[g]), reverse=True)
    while sum(quotas) < count:
        for g in by_remainder:
            if sum(quotas) < count and quotas[g] < limits[g]:
                quotas[g] += 1
    return quotas


def make_plan(
    model: keras.Model, scores, target: float, *, scope: str = "global",
    min_keep: float = 0.05, reduction: str = "sum", normalization: str = "none",
    previous: PruningPlan | None = None, ignored_layers=(), round_to: int = 1,
    graph: ChannelGraph | None = None,
) -> PruningPlan:
    """Decides which channels to remove so that ``target`` of them are gone.

    Args:
        model: The model the scores belong to.
        scores: What ``tfprune.score`` returns (filter or weight granularity).
        target: Fraction of prunable channels (weights) to remove, in [0, 1).
            Structured: the channels of all prunable groups count once each. Or a
            budget the pruned model must fit, ``{"flops": F}`` (counted as
            ``summary.json`` does: 2 x multiply-accumulates) or ``{"params": P}``:
            channels go in order of score per unit of cost saved
            (``tfprune.pruning.budget``); or measured on this machine,
            ``{"latency_ms": L, "threads": 1}`` (the slimmed model's float
            .tflite at batch 1 in LiteRT) or ``{"tflite_kb": S}`` (its file
            size), searched through FLOPs / parameter budgets
            (``tfprune.pruning.measured``). Or per-layer ratios ``{layer name:
            fraction removed}`` (a group named by any member; by hand or from
            ``tfprune.pruning.sensitivity``); unnamed groups are left whole.
        scope: ``"global"`` ranks all channels together on raw scores (the
            paper); ``"layer"`` removes the same fraction from every group.
        min_keep: No group keeps fewer than ``max(1, ceil(min_keep * size))``.
        reduction: How a group's member scores combine: sum, mean, max or first
            (the first source layer's). Scores of a measure with a
            ``group_reduction`` (random, uniform: ``"first"``, one draw per
            group) use that instead.
        normalization: Per-group score normalization before a global ranking:
            none (the paper), l2, max, sum.
        previous: The plan of the previous round; its removed channels stay removed.
        ignored_layers: Layers the channel analysis leaves alone.
        round_to: Every group keeps a multiple of this many channels (or all of
            them), the best-scored ones; the total removed is then as close to
            ``target`` as the rounding allows (``tfprune.pruning.rounding``).
            Structured plans only; 1 (default) does not round. Whatever the
            target, a grouped convolution's channels go evenly from each of its
            groups and GroupNormalization's in whole groups (rounded to the
            nearest such count; for a budget, down, so it still holds).
        graph: The model's ``ChannelGraph`` with these ``ignored_layers``, if
            already built (a ``Pruner``'s); None builds it.

    Returns:
        A ``PruningPlan``.

    Raises:
        PlanError: For a bad option, missing scores, or a target the floors make
            impossible.
        tfprune.importance.NonFiniteScoreError: For NaN or Inf scores (naming the layer).
        tfprune.importance.UninformativeScoreError: For a layer whose scores are all
            zero or all equal (naming the layer): the plan would be decided by ties.
    """
    reduction = (getattr(scores, "metadata", None) or {}).get("group_reduction", reduction)
    _check_options(target, scope, min_keep, reduction, normalization)
    granularity = getattr(scores, "granularity", None) or _infer_granularity(scores)
    if round_to < 1 or (round_to > 1 and granularity == "weight"):
        raise PlanError(f"round_to must be an integer >= 1 for a structured plan, got "
                        f"{round_to!r} ({granularity} granularity).")
    settings = {"scope": scope, "min_keep": min_keep, "reduction": reduction, "round_to": round_to,
                "normalization": normalization, "measure": getattr(scores, "measure", None),
                "ignored_layers": list(ignored_layers),
                "batchnorm": (getattr(scores, "metadata", None) or {}).get("batchnorm")}
    if granularity == "weight":
        if isinstance(target, dict):
            raise PlanError("budget and per-layer targets ({'flops': ...}, {layer: ratio}) need "
                            "a structured (filter) plan.")
        return _weight_plan(scores, target, scope, min_keep, normalization, previous, settings)
    if graph is None or graph.model is not model or graph.ignored_layers != set(ignored_layers):
        graph = ChannelGraph(model, ignored_layers)
    groups = graph.groups
    if not groups:
        raise PlanError(f"model {model.name!r} has no prunable channel group.")
    units = [NORMALIZATIONS[normalization](group_scores(g, scores, reduction)) for g in groups]
    floors = [_floor(g.size, min_keep) for g in groups]
    prior = None
    if previous is not None:
        prior = [previous.keep[str(g.index)] for g in groups]
    if _is_budget(target):
        keep = _budget_keep(model, graph, target, units, floors, prior, round_to)
    elif isinstance(target, dict):
        from tfprune.pruning.sensitivity import ratio_keep

        keep = ratio_keep(graph, units, floors, target, prior, round_to)
    else:
        count = round(target * sum(g.size for g in groups))
        if previous is not None:  # removed channels stay removed, even if rounding overshot
            count = max(count, previous.removed)
        steps = [math.lcm(round_to, g.parts * g.atom) for g in groups]
        keep = round_keep(units, _select(units, floors, count, scope, prior), floors, count,
                          steps, prior)
    keep = even_parts(units, keep, floors, _splits(groups), round_to, prior,
                      down=_is_budget(target))
    history = (previous.history if previous else []) + [
        {"round": len(previous.history) + 1 if previous else 1, "target": target,
         "removed": int(sum((~k).sum() for k in keep)), "total": sum(g.size for g in groups)}]
    return PruningPlan("filter", [g.to_dict() for g in groups],
                       {str(g.index): k for g, k in zip(groups, keep, strict=True)},
                       {str(g.index): u for g, u in zip(groups, units, strict=True)},
                       history, settings)


def _budget_keep(model, graph, target: dict, units, floors, prior, round_to: int) -> list:
    from tfprune.pruning.budget import CostModel, budget_keep

    budget = _check_budget(target)
    try:
        if budget.measured:
            return _measured_keep(model, graph, budget, units, floors, prior, round_to)
        return budget_keep(CostModel(model, graph, budget.kind), units, floors, budget.value,
                           prior, round_to=round_to)
    except ValueError as error:
        raise PlanError(str(error)) from None


def _measured_keep(model, graph, budget, units, floors, prior, round_to: int) -> list:
    """Keep-masks whose slimmed model measures under a latency / file-size budget."""
    from tfprune.pruning.measured import measured_keep
    from tfprune.slimming import slim

    def slimmed(keep: list) -> keras.Model:
        keep = even_parts(units, keep, floors, _splits(graph.groups), round_to, prior, down=True)
        plan = PruningPlan("filter", [g.to_dict() for g in graph.groups],
                           {str(g.index): k for g, k in zip(graph.groups, keep, strict=True)},
                           {str(g.index): u for g, u in zip(graph.groups, units, strict=True)},
                           settings={"ignored_layers": sorted(graph.ignored_layers)})
        return slim(model, plan)

    return measured_keep(model, graph, budget, units, floors, prior, round_to, slimmed)


def _splits(groups) -> list[tuple[int, int]]:
    """Each group's ``(parts, atom)`` for ``even_parts``."""
    return [(g.parts, g.atom) for g in groups]


def _infer_granularity(scores) -> str:
    return "weight" if any(np.ndim(v) > 1 for v in scores.values()) else "filter"


def _weight_plan(scores, target, scope, min_keep, normalization, previous, settings):
    names = list(scores)
    shapes = {n: np.shape(scores[n]) for n in names}
    units = []
    for name in names:
        values = np.asarray(scores[name], np.float64).ravel()
        check_finite(_measure_name(scores), name, values)
        check_informative(_measure_name(scores), name, values)
        units.append(NORMALIZATIONS[normalization](values))
    floors = [_floor(u.size, min_keep) for u in units]
    prior = None if previous is None else [previous.keep[n].ravel() for n in names]
    count = round(target * sum(u.size for u in units))
    keep = _select(units, floors, count, scope, prior)
    history = (previous.history if previous else []) + [
        {"round": len(previous.history) + 1 if previous else 1, "target": target,
         "removed": count, "total": sum(u.size for u in units)}]
    return PruningPlan("weight", [], {n: k.reshape(shapes[n]) for n, k in zip(names, keep,
                       strict=True)}, {n: scores[n] for n in names}, history, settings)
