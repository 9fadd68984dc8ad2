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

import keras
import numpy as np

from tfprune.budget_targets import Budget
from tfprune.graph.channels import ChannelGraph, ChannelGroup, graph_for
from tfprune.importance.scores import check_finite, check_informative
from tfprune.plans.pruning_plan import PlanError, PruningPlan
from tfprune.pruning.axes import axis_floors, axis_of
from tfprune.pruning.cost import KeepCost
from tfprune.pruning.depth import plan_blocks
from tfprune.pruning.layer_ratios import ratio_keep
from tfprune.pruning.ranking import NORMALIZATIONS, REDUCTIONS, RankingOptions
from tfprune.pruning.rounding import even_parts, round_keep
from tfprune.pruning.targets import Fraction, LayerRatios, Target, as_target, to_json
from tfprune.pruning.uniform import uniform_keep


def group_scores(group: ChannelGroup, scores, reduction: str = "sum",
                 informative: bool = True) -> np.ndarray:
    """Reduces the scores of a group's source layers into one score per channel.

    Args:
        group: The channel group.
        scores: The scores by layer name.
        reduction: How its sources' scores combine.
        informative: Refuse scores that are all zero or all equal
            (``UninformativeScoreError``): a lone source's, or, for a group of
            several sources (a residual stream), their combination's.
    """
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
        rows.append(values)
    combined = REDUCTIONS[reduction](np.stack(rows), axis=0)
    if informative:
        check_informative(_measure_name(scores), group.sources[0] if len(rows) == 1 else
                          f"{len(rows)} layers ({', '.join(group.sources[:3])}...)",
                          combined if len(rows) > 1 else rows[0])
    return combined


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
    model: keras.Model, scores, target: float | dict | Target, *,
    previous: PruningPlan | None = None, graph: ChannelGraph | None = None,
    ranking: RankingOptions | None = None, progress=None, block_scores=None, **options,
) -> PruningPlan:
    """Decides which channels to remove so that ``target`` of them are gone.

    Args:
        model: The model the scores belong to.
        scores: What ``tfprune.score`` returns (filter or weight granularity).
        target: A typed target (``tfprune.pruning.targets``: ``Fraction``, a
            ``Budget``, ``LayerRatios``) or its plain form, converted at this
            boundary. Fraction of prunable channels (weights) to remove, in [0, 1).
            Structured: the channels of all prunable groups count once each. Or a
            budget the pruned model must fit, ``{"flops": F}`` (counted as
            ``summary.json`` does: 2 x multiply-accumulates) or ``{"params": P}``:
            channels go in order of score per unit of cost saved
            (``tfprune.pruning.budget_search``); or measured on this machine,
            ``{"latency_ms": L, "threads": 1}`` (the slimmed model's float
            .tflite at batch 1 in LiteRT; with ``"ranking": "latency"`` planned
            by a knapsack over each layer's own LiteRT time) or
            ``{"tflite_kb": S}`` (its file size), searched through FLOPs /
            parameter budgets (``tfprune.pruning.measured``). Or per-layer ratios ``{layer name:
            fraction removed}`` (a group named by any member; by hand or from
            ``tfprune.pruning.sensitivity``); unnamed groups are left whole.
        previous: The plan of the previous round; its removed channels stay removed.
        graph: The model's ``ChannelGraph`` with these ``ignored_layers``, if
            already built (a ``Pruner``'s); None takes the shared one (``graph_for``).
        ranking: How channels are ranked (``tfprune.pruning.ranking.RankingOptions``:
            scope, min_keep, reduction, normalization, round_to, ignored_layers).
        progress: For a measured budget, called with a line of text after each
            measurement (the latency table's layers, the search's steps).
        block_scores: With ``"depth"`` among ``axes``, one score per transformer
            block (``tfprune.block_importance``); None sums the measure's scores
            of each block's units (``tfprune.pruning.depth``).
        **options: The same options as keywords instead (``scope="layer"``,
            ``round_to=8``, ``min_keep=0.1``...), described in ``RankingOptions``.

    Returns:
        A ``PruningPlan``.

    Raises:
        PlanError: For a bad option, missing scores, or a target the floors make
            impossible.
        tfprune.importance.NonFiniteScoreError: For NaN or Inf scores (naming the layer).
        tfprune.importance.UninformativeScoreError: For a layer whose scores are all
            zero or all equal (naming the layer): the plan would be decided by ties.
    """
    ranking = RankingOptions.from_keywords("make_plan", ranking, options)
    scope, min_keep, normalization = ranking.scope, ranking.min_keep, ranking.normalization
    round_to, ignored_layers = ranking.round_to, ranking.ignored_layers
    target = original = as_target(target)
    reduction = (getattr(scores, "metadata", None) or {}).get("group_reduction",
                                                               ranking.reduction)
    ranking.check(reduction)
    granularity = getattr(scores, "granularity", None) or _infer_granularity(scores)
    if round_to < 1 or (round_to > 1 and granularity == "weight"):
        raise PlanError(f"round_to must be an integer >= 1 for a structured plan, got "
                        f"{round_to!r} ({granularity} granularity).")
    settings = {"scope": scope, "min_keep": min_keep, "reduction": reduction, "round_to": round_to,
                "normalization": normalization, "measure": getattr(scores, "measure", None),
                "ignored_layers": list(ignored_layers),
                "batchnorm": (getattr(scores, "metadata", None) or {}).get("batchnorm")}
    if ranking.uniform:
        settings["uniform"] = True
        if isinstance(target, Budget) and target.measured:
            raise PlanError(f"uniform=True with a measured budget ({target.kind}) is not "
                            "supported: use a fraction or a counted budget (flops, params).")
    if ranking.gqa != "groups":
        settings["gqa"] = ranking.gqa
    if ranking.axes is not None:
        settings["axes"] = list(ranking.axes)
    if granularity == "weight":
        if not isinstance(target, Fraction):
            raise PlanError("budget and per-layer targets ({'flops': ...}, {layer: ratio}) need "
                            "a structured (filter) plan.")
        return _weight_plan(scores, target, scope, min_keep, normalization, previous, settings)
    if (graph is None or graph.model is not model or graph.ignored_layers != set(ignored_layers)
            or graph.gqa != ranking.gqa):
        graph = graph_for(model, ignored_layers, ranking.gqa)
    groups = graph.groups
    if not groups:
        raise PlanError(f"model {model.name!r} has no prunable channel group.")
    _require_groups_on_axes(graph, ranking.axes)
    # Groups off the chosen axes are kept whole: their scores are not checked for ties.
    units = [NORMALIZATIONS[normalization](group_scores(
        g, scores, reduction, ranking.axes is None or axis_of(g) in ranking.axes))
        for g in groups]
    floors = axis_floors(groups, [_floor(g.size, min_keep) for g in groups], ranking.axes)
    prior = None
    if previous is not None:
        prior = [previous.keep[str(g.index)] for g in groups]
    blocks = None
    if ranking.axes is not None and "depth" in ranking.axes:
        blocks, target, gone = plan_blocks(model, graph, scores, target, ranking.axes,
                                           block_scores, previous)
        active = [i for i, out in enumerate(gone) if not out]
        keep = [np.ones(g.size, bool) for g in groups]
        if active and target is not None:
            pick = [groups[i] for i in active]
            chosen = _channel_keep(model, graph, pick, [units[i] for i in active],
                                   [floors[i] for i in active],
                                   None if prior is None else [prior[i] for i in active],
                                   target, ranking, previous, progress)
            for i, mask in zip(active, chosen, strict=True):
                keep[i] = mask
    else:
        keep = _channel_keep(model, graph, groups, units, floors, prior, target, ranking,
                             previous, progress)
    entry = {"round": len(previous.history) + 1 if previous else 1, "target": to_json(original),
             "removed": int(sum((~k).sum() for k in keep)), "total": sum(g.size for g in groups)}
    if blocks is not None:
        entry["blocks_removed"] = int(len(blocks["keep"]) - sum(blocks["keep"]))
    history = (previous.history if previous else []) + [entry]
    return PruningPlan.from_groups(groups, keep, units, history, settings, blocks)


def _require_groups_on_axes(graph: ChannelGraph, axes) -> None:
    """Raises PlanError when channel axes are asked for and no group lies on them.

    A plan that could remove nothing on the chosen axes would otherwise be
    made silently; the error says what keeps those channels whole.
    """
    wanted = [axis for axis in axes or () if axis != "depth"]
    if not wanted or any(axis_of(group) in wanted for group in graph.groups):
        return
    reasons = sorted({why for _, _, why in graph.kept_whole()})
    raise PlanError(f"axes {wanted}: model {graph.model.name!r} has no prunable channel group "
                    f"on {'this axis' if len(wanted) == 1 else 'these axes'}"
                    + (f"; kept whole: {'; '.join(reasons[:4])}" if reasons else "") + ".")


def _channel_keep(model, graph, groups, units, floors, prior, target, ranking, previous,
                  progress) -> list:
    """Per group, its keep-mask for ``target`` (see ``make_plan``)."""
    round_to = ranking.round_to
    if isinstance(target, Budget):
        keep = _budget_keep(model, graph, target, units, floors, prior, round_to, progress)
    elif isinstance(target, LayerRatios):
        keep = ratio_keep(graph, units, floors, target.ratios, prior, round_to)
    else:
        # With axes, the fraction is of the channels on those axes.
        count = round(target.value * sum(g.size for g in groups
                                         if ranking.axes is None or axis_of(g) in ranking.axes))
        if previous is not None:  # removed channels stay removed, even if rounding overshot
            count = max(count, previous.removed)
        steps = [math.lcm(round_to, g.parts * g.atom) for g in groups]
        keep = round_keep(units, _select(units, floors, count, ranking.scope, prior), floors, count,
                          steps, prior)
    if ranking.uniform:
        counted = isinstance(target, Budget) and not target.measured
        keep = uniform_keep(groups, units, keep, floors,
                            [math.lcm(round_to, g.parts * g.atom) for g in groups], prior,
                            down=isinstance(target, Budget),
                            cost=KeepCost(model, graph, target.kind) if counted else None,
                            budget=target.value if counted else None)
    return even_parts(units, keep, floors, _splits(groups), round_to, prior,
                      down=isinstance(target, Budget))


def _budget_keep(model, graph, budget: Budget, units, floors, prior, round_to: int,
                 progress=None) -> list:
    from tfprune.pruning.budget_search import budget_keep
    from tfprune.pruning.cost import KeepCost

    try:
        if budget.measured:
            return _measured_keep(model, graph, budget, units, floors, prior, round_to,
                                  progress)
        return budget_keep(KeepCost(model, graph, budget.kind), units, floors, budget.value,
                           prior, round_to=round_to)
    except ValueError as error:
        raise PlanError(str(error)) from None


def _measured_keep(model, graph, budget, units, floors, prior, round_to: int,
                   progress=None) -> list:
    """Keep-masks whose slimmed model measures under a latency / file-size budget."""
    from tfprune.pruning.measured import measured_keep
    from tfprune.slimming import slim

    def slimmed(keep: list) -> keras.Model:
        keep = even_parts(units, keep, floors, _splits(graph.groups), round_to, prior, down=True)
        plan = PruningPlan.from_groups(graph.groups, keep, units,
                                       settings={"ignored_layers": sorted(graph.ignored_layers),
                                                 "gqa": graph.gqa})
        return slim(model, plan)

    return measured_keep(model, graph, budget, units, floors, prior, round_to, slimmed,
                         progress)


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
    count = round(target.value * sum(u.size for u in units))
    keep = _select(units, floors, count, scope, prior)
    history = (previous.history if previous else []) + [
        {"round": len(previous.history) + 1 if previous else 1, "target": target.value,
         "removed": count, "total": sum(u.size for u in units)}]
    return PruningPlan("weight", [], {n: k.reshape(shapes[n]) for n, k in zip(names, keep,
                       strict=True)}, {n: scores[n] for n in names}, history, settings)
