"""Depth pruning: a keras-hub backbone (or causal LM) without some of its blocks.

``drop_blocks(model, [3, 7])`` builds the model's own class with
``num_layers`` two smaller and copies every weight but those of blocks 3 and
7: the embeddings and final normalization as they are, the kept blocks in
order. Rank the blocks first with ``tfprune.importance.blocks.block_importance``.

A plan with depth (``make_plan(..., axes=(..., "depth"))``, whose
``PruningPlan.blocks`` lists the blocks by name) is slimmed here first: the model is rebuilt without
its removed blocks, and the plan's channel masks are carried over to it
(``plan_without_blocks``).
"""

from __future__ import annotations

import keras

from tfprune.graph.channels import graph_for
from tfprune.importance.blocks import transformer_blocks
from tfprune.importance.scores import ScoringError
from tfprune.plans.pruning_plan import PlanError, PruningPlan
from tfprune.slimming.same_class import around, weights_are_the_backbones


def drop_blocks(model: keras.Model, blocks) -> keras.Model:
    """``model`` rebuilt of its own class without the given blocks.

    Args:
        model: A keras-hub transformer backbone, or a task whose weights are all
            its backbone's (a causal LM with its tied output embedding).
        blocks: Indices of the blocks to remove.

    Returns:
        A new model of the same class (a task keeps its preprocessor).

    Raises:
        ValueError: For an index out of range, removing every block, or a model
            whose config has no ``num_layers``.
    """
    backbone = getattr(model, "backbone", model)
    if backbone is not model:
        if not weights_are_the_backbones(model):
            raise ValueError(f"{type(model).__name__} has weights outside its backbone; drop "
                             "the blocks of its backbone and rebuild the task around it.")
        return around(model, drop_blocks(backbone, blocks))
    existing = transformer_blocks(backbone)
    removed = sorted({int(b) for b in blocks})
    if any(not 0 <= b < len(existing) for b in removed):
        raise ValueError(f"blocks {removed}: {backbone.name!r} has blocks 0 to "
                         f"{len(existing) - 1}.")
    if len(removed) == len(existing):
        raise ValueError(f"blocks {removed}: removing every block of {backbone.name!r} leaves "
                         "no model.")
    config = backbone.get_config()
    if config.get("num_layers") != len(existing):
        raise ValueError(f"{type(backbone).__name__}'s config has no num_layers matching its "
                         f"{len(existing)} blocks.")
    rebuilt = type(backbone).from_config({**config, "num_layers": len(existing) - len(removed)})
    kept = [block for index, block in enumerate(existing) if index not in removed]
    for target, source in zip(transformer_blocks(rebuilt), kept, strict=True):
        target.set_weights(source.get_weights())
    others = [layer for layer in backbone.layers if layer.weights and layer not in existing]
    fresh = [layer for layer in rebuilt.layers
             if layer.weights and layer not in transformer_blocks(rebuilt)]
    for target, source in zip(fresh, others, strict=True):
        target.set_weights(source.get_weights())
    return rebuilt


def has_blocks(model) -> bool:
    """Whether a model (or a task's backbone) lists keras-hub ``transformer_layers``."""
    return bool(getattr(getattr(model, "backbone", model), "transformer_layers", None))


def block_calls(graph) -> list[set[str]]:
    """Per block (``transformer_layers`` order), the graph's names of its layers' calls.

    A layer's name in the graph is its path only when names collide, so a
    block is known by the calls of its layers, not by a name prefix.

    Raises:
        PlanError: For a model without keras-hub ``transformer_layers``, or a
            block none of whose layers is in the graph.
    """
    try:
        blocks = transformer_blocks(graph.model)
    except ScoringError as error:
        raise PlanError(f"axes: depth: {error}") from None
    found = []
    for block in blocks:
        mine = {id(layer) for layer in block._flatten_layers(include_self=True)}
        names = {call.name for call in graph.calls if id(call.operation) in mine}
        if not names:
            raise PlanError(f"axes: depth: block {block.name!r} has no layer in the model's "
                            "graph.")
        found.append(names)
    return found


def block_names(model: keras.Model) -> list[str]:
    """The names of a keras-hub model's blocks, in order (a plan's ``blocks["names"]``)."""
    return [block.name for block in transformer_blocks(model)]


def in_block(name: str, calls: set[str]) -> bool:
    """Whether a call name, or a unit name (``call/unit``), is one of a block's calls."""
    return name in calls or name.rsplit("/", 1)[0] in calls


def _new_names(model: keras.Model, graph, shallow: keras.Model, new_graph,
               removed: list[int]) -> dict[str, str]:
    """``{call name in model: call name in shallow}`` for every call outside removed blocks.

    ``drop_blocks`` builds the same class with fewer blocks, so its layers,
    removed blocks' left out, come in the same order as the model's.
    """
    gone = {id(layer) for index, block in enumerate(transformer_blocks(model))
            if index in removed for layer in block._flatten_layers(include_self=True)}
    old = [layer for layer in model._flatten_layers(include_self=True) if id(layer) not in gone]
    new = list(shallow._flatten_layers(include_self=True))
    if len(old) != len(new) or any(type(a) is not type(b) for a, b in zip(old, new,
                                                                          strict=True)):
        raise PlanError(f"slim: {type(model).__name__} without blocks {removed} does not have "
                        "the model's other layers in the same order.")
    names = {}
    for before, after in zip(old, new, strict=True):
        if id(before) in graph.names and id(after) in new_graph.names:
            names[graph.names[id(before)]] = new_graph.names[id(after)]
    return names


def _renamed(name: str, names: dict[str, str]) -> str | None:
    """A call or unit name in the shallower model (None: it was in a removed block)."""
    if name in names:
        return names[name]
    head, _, unit = name.rpartition("/")
    return f"{names[head]}/{unit}" if head in names else None


def plan_without_blocks(plan: PruningPlan, graph, shallow: keras.Model) -> PruningPlan:
    """The plan's channel masks, for the model built without the plan's removed blocks.

    Groups inside removed blocks go; the others are found in the shallower
    model's graph by their sources, renamed as its layers are named.

    Args:
        plan: A plan with ``blocks`` (``PruningPlan.removed_blocks``).
        graph: The ``ChannelGraph`` of the model the plan was made for.
        shallow: That model after ``drop_blocks(model, plan.removed_blocks)``.

    Raises:
        PlanError: If a group of the plan has no counterpart in ``shallow``.
    """
    gqa = plan.settings.get("gqa", "groups")
    names = _new_names(graph.model, graph, shallow, graph_for(shallow, (), gqa),
                       plan.removed_blocks)
    ignored = [new for new in (_renamed(name, names) for name in
                               plan.settings.get("ignored_layers", ())) if new is not None]
    new_graph = graph_for(shallow, ignored, gqa)
    by_sources = {}
    for group in graph.groups:
        sources = tuple(new for new in (_renamed(name, names) for name in group.sources)
                        if new is not None)
        if sources:
            by_sources[sources] = plan.keep[str(group.index)]
    keep = []
    for group in new_graph.groups:
        mask = by_sources.get(tuple(group.sources))
        if mask is None or mask.size != group.size:
            raise PlanError(f"slim: channel group of {group.sources[:2]} in the model without "
                            f"blocks {plan.removed_blocks} has no counterpart in the plan.")
        keep.append(mask)
    settings = {**plan.settings, "ignored_layers": ignored}
    return PruningPlan.from_groups(new_graph.groups, keep, None, plan.history, settings)
