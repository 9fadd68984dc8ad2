"""Channel groups: which channels of a model must be removed together.

Every tensor's last axis is a channel space. Each layer or keras.ops node's
``LayerHandler`` (``tfprune.handlers``) says what it does with channels: a
conv creates a space for its output and consumes its input's; BatchNorm and
depthwise convs follow their input's space; activations and pooling pass it
through; Add, Multiply and elementwise ops join their inputs' spaces into one
(a ResNet stage's residual stream, squeeze-excite gates); Concatenate maps
index ranges; Flatten tiles them; layers that mix channels block them. A union
of joined spaces is a ``ChannelGroup``. Spaces that reach the model's inputs
or outputs are not prunable. Nested models and Sequential models are analysed
as one flat graph (``tfprune.graph.model_graph``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfprune.graph.model_graph import (
    Alias,
    Call,
    functional_graph,
    opaque_reason,
    operation_order,
    walk,
)
from tfprune.handlers import GraphError, Layout, handler_for
from tfprune.handlers.base import fallback_handler
from tfprune.handlers.channel_analysis import ChannelAnalysis
from tfprune.handlers.structure import Ignored, KeepWhole
from tfprune.model_cache import cached


@dataclasses.dataclass
class ChannelGroup:
    """Channels removed together.

    Attributes:
        index: The group's position in ``channel_groups``' result.
        size: Channel count.
        members: Names of the layers whose channels it removes, in graph order:
            the layers producing it (``sources``), the layers following it
            (BatchNorm, DepthwiseConv2D) and the layers consuming it as input
            channels (``consumers``).
        sources: Layers whose kernel's output channels form the group; their
            importance scores are reduced into the group's score.
        followers: Layers with per-channel weights that follow the group.
        consumers: Layers whose kernel's input channels (or inputs) are the group.
        parts: The channels fall into this many equal contiguous parts, each of
            which keeps the same count (a grouped convolution's groups).
        atom: Channels go in contiguous atoms of this many, kept or removed
            whole (GroupNormalization's groups).
    """

    index: int
    size: int
    sources: list[str] = dataclasses.field(default_factory=list)
    followers: list[str] = dataclasses.field(default_factory=list)
    consumers: list[str] = dataclasses.field(default_factory=list)
    parts: int = 1
    atom: int = 1

    @property
    def members(self) -> list[str]:
        """Every layer whose channels the group removes (sources, followers, consumers)."""
        seen = dict.fromkeys(self.sources + self.followers + self.consumers)
        return list(seen)

    def to_dict(self) -> dict:
        """JSON form."""
        split = {} if (self.parts, self.atom) == (1, 1) else {"parts": self.parts,
                                                               "atom": self.atom}
        return {"index": self.index, "size": self.size, "sources": self.sources,
                "followers": self.followers, "consumers": self.consumers, **split}


_IGNORED, _UNANALYSED = Ignored(), KeepWhole()


#: ``ChannelGraph(gqa=...)`` choices.
GQA_MODES = ("groups", "heads")


class ChannelGraph:
    """The dependency analysis of one model: its groups and each layer's channel parts.

    Args:
        model: A built functional or Sequential Keras model (nested models inside
            it are analysed as part of it).
        ignored_layers: Names of layers or keras.ops nodes to leave alone; their
            channels (and their neighbours' channels they touch) are never pruned.
        gqa: How grouped-query attention loses heads: ``"groups"`` (default:
            whole query groups, a key/value head with its query heads) or
            ``"heads"`` (query heads, the same count from every group; the
            key/value heads stay).

    Attributes:
        groups: The prunable ``ChannelGroup``s in graph order.
        calls: The graph's layer and op calls in order (nested models inlined).
        operations: ``{name: layer or op}`` of every call.
        layer_inputs / layer_outputs: ``{name: Layout}`` of each call's main
            input (``LayerHandler.main_input``) / first output tensor.
        layer_inner: ``{name: {unit: Layout}}`` of the channel spaces inside a
            layer (MultiHeadAttention's heads).

    Raises:
        GraphError: Listing every layer or op it cannot analyse (name, type,
            why) with the fix, two layers with one name, or a subclassed model.
    """

    def __init__(self, model, ignored_layers=(), gqa: str = "groups"):
        if gqa not in GQA_MODES:
            raise GraphError(f"gqa must be one of {list(GQA_MODES)}, got {gqa!r}.")
        self.model = model
        self.ignored_layers = set(ignored_layers)
        self.gqa = gqa
        self.steps = list(walk(model))
        self.calls = [step for step in self.steps if isinstance(step, Call)]
        self.operations = {call.name: call.operation for call in self.calls}
        self.names = {id(call.operation): call.name for call in self.calls}
        self._fallbacks: dict = {}
        unknown = sorted(self.ignored_layers - set(self.operations))
        if unknown:
            raise GraphError(f"ignored_layers: no layer or op named {unknown} in model "
                             f"{model.name!r}.")
        self._analysis = self._analyse()
        self.groups = self._collect_groups()

    def name_of(self, layer) -> str:
        """The name a layer of the model is known by (its path when its own name is shared).

        Plans, scores, ``ignored_layers`` and summaries use this name.
        """
        return self.names.get(id(layer), layer.name)

    def handler(self, name: str):
        """The handler tfprune uses for the call named ``name``."""
        if name in self.ignored_layers:
            return _IGNORED
        operation = self.operations[name]
        handler = handler_for(operation)
        if handler is None and name not in self._fallbacks:
            self._fallbacks[name] = fallback_handler(operation, opaque_reason(operation))
        return handler or self._fallbacks.get(name) or _UNANALYSED

    def _analyse(self) -> ChannelAnalysis:
        analysis = ChannelAnalysis()
        analysis.names = self.names
        analysis.gqa = self.gqa
        graph = functional_graph(self.model)
        for tensor in graph.inputs:
            analysis.new_tensor_space(tensor, blocked="the model input")
        self.layer_inputs, self.layer_outputs = {}, {}
        problems = self._name_problems()
        first_calls: dict[str, list[Layout]] = {}
        for step in self.steps:
            if isinstance(step, Alias):
                for source, target in zip(step.sources, step.targets, strict=True):
                    analysis.set_layout(target, analysis.layout(source))
                continue
            problems += self._analyse_call(analysis, step)
            handler = self.handler(step.name)
            if not (handler.joins_own_calls or (handler.calls_independent
                                                and not step.operation.weights)):
                _join_shared_calls(analysis, step, first_calls)
            if step.inputs:
                self.layer_inputs[step.name] = analysis.layout(
                    handler.main_input(step.operation, step.inputs))
            self.layer_outputs[step.name] = analysis.layout(step.outputs[0])
        for tensor in graph.outputs:
            analysis.block(analysis.layout(tensor), "a model output")
        self.layer_inner = {name: {unit: Layout.single(space, analysis.sizes[space])
                                   for unit, space in units.items()}
                            for name, units in analysis.inner.items()}
        if problems:
            raise GraphError(_problems_message(self.model, problems))
        return analysis

    def _analyse_call(self, analysis: ChannelAnalysis, call: Call) -> list[str]:
        """Runs the call's handler; returns the problems found (the call is then blocked)."""
        operation, handler = call.operation, self.handler(call.name)
        kind = type(operation).__name__
        if handler is _UNANALYSED:
            _UNANALYSED.analyse(analysis, operation, call.inputs, call.outputs)
            return [(call.name, kind, opaque_reason(operation))]
        try:
            handler.analyse(analysis, operation, call.inputs, call.outputs)
        except GraphError as error:
            _UNANALYSED.analyse(analysis, operation, call.inputs, call.outputs)
            return [(call.name, kind, str(error))]
        return []

    def _name_problems(self) -> list:
        """Two different layers under one name (a layer called twice is fine: shared)."""
        kinds = {}
        for call in self.calls:
            kinds.setdefault(call.name, set()).add(id(call.operation))
        return [(name, "several", "two different layers share this name (rename one)")
                for name, ids in kinds.items() if len(ids) > 1]

    def _collect_groups(self) -> list[ChannelGroup]:
        analysis = self._analysis
        order = _order_key(self.model)
        self._roots: dict[int, ChannelGroup] = {}
        groups = []
        for space in range(len(analysis.parent)):
            root = analysis.find(space)
            if root != space or analysis.blocked[root] or not analysis.roles[root]["sources"]:
                continue
            roles = {role: sorted(names, key=order)
                     for role, names in analysis.roles[root].items()}
            group = ChannelGroup(len(groups), analysis.sizes[root], roles["sources"],
                                 roles["followers"], roles["consumers"], *analysis.splits[root])
            groups.append(group)
            self._roots[root] = group
        return groups

    def kept_whole(self) -> list[tuple[list[str], int, str]]:
        """The channels layers produce that may not be pruned, and why.

        Returns:
            ``(sources, channels, reason)`` per unprunable channel space that
            some layer's kernel produces (a conv feeding a LayerNormalization,
            a model output, a layer in ``ignored_layers``), in graph order.
        """
        analysis = self._analysis
        order = _order_key(self.model)
        found = []
        for space in range(len(analysis.parent)):
            sources = analysis.roles[space]["sources"]
            if analysis.find(space) != space or not analysis.blocked[space] or not sources:
                continue
            found.append((sorted(sources, key=order), analysis.sizes[space],
                          analysis.blocked[space]))
        return sorted(found, key=lambda item: order(item[0][0]))

    def stream_writers(self, inside) -> list[str]:
        """Calls inside a part of the model that write a channel space the rest also writes.

        In a transformer block, these are what the block adds to the residual
        stream (its attention and MLP output projections): zeroing their
        output makes a pre-norm block pass its input on unchanged.

        Args:
            inside: ``inside(call name) -> bool``: whether a call is in the part.
        """
        analysis = self._analysis
        found = []
        for space in range(len(analysis.parent)):
            sources = analysis.roles[space]["sources"] if analysis.find(space) == space else []
            mine = [name for name in sources if inside(name)]
            if mine and len(mine) < len(sources):
                found += mine
        return sorted(set(found), key=_order_key(self.model))

    def output_size(self, name: str) -> int:
        """The channel count of call ``name``'s first output's last axis."""
        layout = self.layer_outputs[name]
        return sum(size for _, size in layout.spaces) * layout.tiles

    def group_of_space(self, space: int) -> ChannelGroup | None:
        """The prunable group a channel space belongs to, or None if it is not prunable."""
        return self._roots.get(self._analysis.find(space))

    def inner_masks(self, name: str, keep: dict[int, np.ndarray]) -> dict:
        """``{unit: keep-mask}`` of the inner units of call ``name`` that lose channels."""
        masks = {unit: self.channel_mask(layout, keep)
                 for unit, layout in self.layer_inner.get(name, {}).items()}
        return {unit: mask for unit, mask in masks.items() if mask is not None}

    def variable_masks(self, keep: dict[int, np.ndarray]) -> list:
        """``[(variable, mask array)]`` of every variable that group keep-masks touch.

        A variable touched twice (a conv's output filters and its input
        channels) gets the product of both masks.

        Args:
            keep: ``{group index: boolean keep-mask}``.
        """
        pairs = []
        for call in self.calls:
            in_mask = self.channel_mask(self.layer_inputs.get(call.name), keep)
            out_mask = self.channel_mask(self.layer_outputs[call.name], keep)
            inner = self.inner_masks(call.name, keep)
            handler = self.handler(call.name)
            if in_mask is not None or out_mask is not None:
                pairs += handler.variable_masks(call.operation, in_mask, out_mask)
            if inner:
                pairs += handler.inner_masks(call.operation, inner)
        return combined_masks(pairs)

    def channel_mask(self, layout: Layout | None, keep: dict[int, np.ndarray]):
        """The keep-mask of a tensor's last axis from group masks; None if nothing is removed.

        Args:
            layout: The tensor's ``Layout`` (e.g. ``layer_inputs[name]``).
            keep: ``{group index: boolean keep-mask}``.
        """
        if layout is None:
            return None
        pieces, touched = [], False
        for space, size in layout.spaces:
            group = self.group_of_space(space)
            mask = None if group is None else keep.get(group.index)
            touched = touched or mask is not None
            pieces.append(np.ones(size, bool) if mask is None else np.asarray(mask, bool))
        return np.tile(np.concatenate(pieces), layout.tiles) if touched else None


def combined_masks(pairs: list) -> list:
    """``[(variable, mask)]`` with one entry per variable, the masks it got multiplied."""
    combined: dict[int, list] = {}
    for variable, mask in pairs:
        entry = combined.setdefault(id(variable), [variable, np.ones(variable.shape, np.float32)])
        entry[1] = entry[1] * mask
    return [tuple(entry) for entry in combined.values()]


def _order_key(model):
    """``key(name) -> position`` in the model's order, for a call or a ``call/unit`` name."""
    order = {name: i for i, name in enumerate(operation_order(model))}

    def key(name: str) -> int:
        if name in order:
            return order[name]
        return order.get(name.rpartition("/")[0], len(order))  # a unit: attention/heads
    return key


def _join_shared_calls(analysis: ChannelAnalysis, call: Call,
                       first_calls: dict[str, list[Layout]]) -> None:
    """Makes every call of a shared layer use the channel spaces of its first call.

    A layer called more than once (a siamese tower, an encoder applied to two
    inputs, a nested model called twice) has one set of weights and one
    configuration for all its calls, so each call's input and output channels
    must be removed alike: their spaces are joined, tensor by tensor. Where two
    calls' tensors are laid out differently (a concatenation in one, a plain
    tensor in the other) those channels are kept whole.
    """
    layouts = [analysis.tensors[id(tensor)] for tensor in [*call.inputs, *call.outputs]
               if id(tensor) in analysis.tensors]
    first = first_calls.setdefault(call.name, layouts)
    if first is layouts:
        return
    reason = f"{call.name!r} is shared by calls whose channels are laid out differently"
    if len(first) != len(layouts):  # called on a different number of tensors
        for layout in [*first, *layouts]:
            analysis.block(layout, reason)
        return
    for old, new in zip(first, layouts, strict=True):
        if _layout_shape(old) != _layout_shape(new):
            analysis.block(old, reason)
            analysis.block(new, reason)
            continue
        for (a, _), (b, _) in zip(old.spaces, new.spaces, strict=True):
            analysis.union(a, b, call.name)


def _layout_shape(layout: Layout) -> tuple:
    """A layout's part sizes and tiling, without its space ids."""
    return tuple(size for _, size in layout.spaces), layout.tiles


def _problems_message(model, problems: list) -> str:
    problems = list(dict.fromkeys(tuple(problem) for problem in problems))  # each once
    lines = [f"model {model.name!r}: tfprune cannot analyse {len(problems)} layer(s) or op(s):"]
    lines += [f"  - {name!r} ({kind}): {why}" for name, kind, why in problems]
    names = list(dict.fromkeys(name for name, _, _ in problems))
    lines.append(f"Fix: pass ignored_layers={names!r} to keep their channels whole (never "
                 "pruned), or describe the type once with tfprune.register_layer_handler("
                 "LayerType, handler) (see docs/handlers.md).")
    return "\n".join(lines)


def channel_groups(model, ignored_layers=(), gqa: str = "groups") -> list[ChannelGroup]:
    """Finds the groups of channels that must be pruned together.

    Args:
        model: A built functional or Sequential Keras model (the builders'
            models, keras.applications models, nested models, your own).
        ignored_layers: Names of layers to leave alone (their channels are
            never pruned), e.g. a custom layer the analysis does not know.
        gqa: ``"groups"`` or ``"heads"``: how grouped-query attention loses
            heads (``ChannelGraph``).

    Returns:
        The prunable groups in graph order; each has ``.members`` (layer names
        whose channels it removes together), ``.size`` (channel count),
        ``.sources`` (the layers whose scores rank it).

    Raises:
        GraphError: Listing every layer or op it cannot analyse (name, type, why).

    Example:
        >>> for group in tfprune.channel_groups(model):
        ...     print(group.size, group.members)
    """
    return graph_for(model, ignored_layers, gqa).groups


class _GraphCache:
    """One model's analysed graphs, per set of ignored layers, with the structure they saw.

    Held in the model's own cache (``tfprune.model_cache``): it lives and dies
    with the model.
    """

    def __init__(self):
        self.structure = None
        self.graphs: dict[tuple, ChannelGraph] = {}


def _structure(model) -> tuple:
    """What the analysis depends on: the layers (identity, name) and their weights' shapes."""
    return tuple((id(layer), layer.name, tuple(tuple(w.shape) for w in layer.weights))
                 for layer in model.layers)


def graph_for(model, ignored_layers=(), gqa: str = "groups") -> ChannelGraph:
    """The model's ``ChannelGraph`` with these ignored layers, analysed once and then shared.

    The Pruner, masks, plans, sensitivity, slim and the CLI all get their graph
    here. It is analysed again when the model's layers or their weights'
    shapes change.

    Args:
        model: A built Keras model.
        ignored_layers: Names of layers or ops the analysis leaves alone.
        gqa: ``"groups"`` or ``"heads"`` (``ChannelGraph``).

    Raises:
        GraphError: As ``ChannelGraph`` (never cached).
    """
    cache = cached(model, "channel_graphs", _GraphCache)
    structure = _structure(model)
    if cache.structure != structure:
        cache.structure, cache.graphs = structure, {}
    key = (frozenset(ignored_layers), gqa)
    if key not in cache.graphs:
        cache.graphs[key] = ChannelGraph(model, ignored_layers, gqa)
    return cache.graphs[key]
