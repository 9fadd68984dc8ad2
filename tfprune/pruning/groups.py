"""Channel groups: which channels of a functional graph must be removed together.

Every tensor's last axis is a channel space. A layer with a kernel (Conv,
SeparableConv, Dense) creates a new space for its output and consumes its
input's space;
BatchNormalization and DepthwiseConv2D follow their input's space; pooling,
activations, padding, dropout and the like pass it through; Add, Multiply,
Subtract, Average, Maximum and Minimum join their inputs' spaces into one
(a ResNet stage's residual stream, squeeze-excite gates); Concatenate maps
index ranges; Flatten tiles the channels of each spatial position. A union
of joined spaces is a ``ChannelGroup``. Spaces that reach the model's input
or outputs are not prunable. Per-layer-type rules live in ``LAYER_RULES``,
which users can extend with ``register_layer_rule``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from tfprune.layer_types import lookup


class GraphError(ValueError):
    """The graph has a layer the dependency analysis cannot handle."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a tensor's last axis is made of channel spaces.

    ``spaces`` lists ``(space, size)`` in order (several after a Concatenate),
    and the whole is repeated ``tiles`` times (Flatten of an (H, W, C) tensor:
    index ``p * C + c``, ``tiles = H * W``).
    """

    spaces: tuple
    tiles: int = 1

    @classmethod
    def single(cls, space: int, size: int) -> Layout:
        """One plain space."""
        return cls(((space, int(size)),))


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
    """

    index: int
    size: int
    sources: list[str] = dataclasses.field(default_factory=list)
    followers: list[str] = dataclasses.field(default_factory=list)
    consumers: list[str] = dataclasses.field(default_factory=list)

    @property
    def members(self) -> list[str]:
        """Every layer whose channels the group removes (sources, followers, consumers)."""
        seen = dict.fromkeys(self.sources + self.followers + self.consumers)
        return list(seen)

    def to_dict(self) -> dict:
        """JSON form."""
        return {"index": self.index, "size": self.size, "sources": self.sources,
                "followers": self.followers, "consumers": self.consumers}


class _Analysis:
    """Union-find over channel spaces, filled by the layer rules."""

    def __init__(self):
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.roles: list[dict] = []
        self.blocked: list[str | None] = []
        self.tensors: dict[int, Layout] = {}

    def new_space(self, size: int) -> int:
        self.parent.append(len(self.parent))
        self.sizes.append(int(size))
        self.roles.append({"sources": [], "followers": [], "consumers": []})
        self.blocked.append(None)
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def union(self, a: int, b: int, where: str) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.sizes[a] != self.sizes[b]:
            raise GraphError(f"layer {where!r} joins {self.sizes[a]} and {self.sizes[b]} "
                             "channels; joined tensors need equal channel counts.")
        self.parent[b] = a
        for role, names in self.roles[b].items():
            self.roles[a][role] += names
        self.blocked[a] = self.blocked[a] or self.blocked[b]

    def layout(self, tensor) -> Layout:
        return self.tensors[id(tensor)]

    def single_space(self, tensor, layer) -> int:
        layout = self.layout(tensor)
        if len(layout.spaces) != 1 or layout.tiles != 1:
            raise GraphError(
                f"layer {layer.name!r} ({type(layer).__name__}) needs one plain channel space "
                "but its input is a concatenation or flattening; list it in ignored_layers."
            )
        return layout.spaces[0][0]

    def add_role(self, layout: Layout, role: str, name: str) -> None:
        for space, _ in layout.spaces:
            names = self.roles[self.find(space)][role]
            if name not in names:
                names.append(name)

    def block(self, layout: Layout, reason: str) -> None:
        for space, _ in layout.spaces:
            root = self.find(space)
            self.blocked[root] = self.blocked[root] or reason


# -- layer rules: (analysis, layer, input tensors, output tensors) -> None ---------------------

def _source(analysis, layer, inputs, outputs):
    """Conv/SeparableConv/Dense: consumes its input channels, creates a space for its output."""
    if getattr(layer, "groups", 1) != 1:
        raise GraphError(f"layer {layer.name!r}: grouped convolutions (groups="
                         f"{layer.groups}) are not supported; list it in ignored_layers.")
    analysis.add_role(analysis.layout(inputs[0]), "consumers", layer.name)
    space = analysis.new_space(outputs[0].shape[-1])
    analysis.roles[space]["sources"].append(layer.name)
    analysis.tensors[id(outputs[0])] = Layout.single(space, outputs[0].shape[-1])


def _follow(analysis, layer, inputs, outputs):
    """BatchNorm, DepthwiseConv2D: per-channel weights on the input's channels.

    The input may be a concatenation (DenseNet's BN after Concatenate); the
    layer then follows every space in it.
    """
    if getattr(layer, "depth_multiplier", 1) != 1:
        raise GraphError(f"layer {layer.name!r}: depth_multiplier > 1 is not supported; "
                         "list it in ignored_layers.")
    if isinstance(layer, keras.layers.BatchNormalization) and layer.axis not in (-1, len(
            inputs[0].shape) - 1):
        raise GraphError(f"layer {layer.name!r}: BatchNormalization over axis {layer.axis} "
                         "is not the channel axis.")
    layout = analysis.layout(inputs[0])
    if layout.tiles != 1:
        raise GraphError(f"layer {layer.name!r} ({type(layer).__name__}) follows a flattened "
                         "tensor; list it in ignored_layers.")
    analysis.add_role(layout, "followers", layer.name)
    analysis.tensors[id(outputs[0])] = layout


def _pass_through(analysis, layer, inputs, outputs):
    """Pooling, activations, padding, dropout: channels unchanged."""
    if outputs[0].shape[-1] != inputs[0].shape[-1]:
        raise GraphError(f"layer {layer.name!r} ({type(layer).__name__}) changes the channel "
                         "count; list it in ignored_layers.")
    analysis.tensors[id(outputs[0])] = analysis.layout(inputs[0])


def _merge(analysis, layer, inputs, outputs):
    """Add, Multiply, ...: every input and the output share one channel space.

    An input with one channel broadcasts (e.g. a scalar gate) and joins nothing.
    """
    joined = [tensor for tensor in inputs if tensor.shape[-1] == outputs[0].shape[-1]]
    spaces = [analysis.single_space(tensor, layer) for tensor in joined]
    for space in spaces[1:]:
        analysis.union(spaces[0], space, layer.name)
    analysis.tensors[id(outputs[0])] = Layout.single(spaces[0], outputs[0].shape[-1])


def _concatenate(analysis, layer, inputs, outputs):
    """Concatenate on the channel axis: the output's parts are the inputs' parts."""
    if layer.axis not in (-1, len(outputs[0].shape) - 1):
        _pass_through(analysis, layer, inputs[:1], outputs)
        return
    layouts = [analysis.layout(tensor) for tensor in inputs]
    if any(layout.tiles != 1 for layout in layouts):
        raise GraphError(f"layer {layer.name!r}: concatenating flattened tensors is not "
                         "supported; list it in ignored_layers.")
    analysis.tensors[id(outputs[0])] = Layout(sum((lay.spaces for lay in layouts), ()))


def _flatten(analysis, layer, inputs, outputs):
    """Flatten: each spatial position repeats the channels (index p * C + c)."""
    layout = analysis.layout(inputs[0])
    tiles = int(np.prod(inputs[0].shape[1:-1]))
    analysis.tensors[id(outputs[0])] = Layout(layout.spaces, layout.tiles * tiles)


def _reshape(analysis, layer, inputs, outputs):
    """Reshape: channels kept last pass through; a flattening tiles; anything else blocks."""
    in_shape, out_shape = inputs[0].shape[1:], outputs[0].shape[1:]
    if out_shape[-1] == in_shape[-1] and np.prod(out_shape) == np.prod(in_shape):
        _pass_through(analysis, layer, inputs, outputs)
    elif len(out_shape) == 1 and out_shape[0] == np.prod(in_shape):
        _flatten(analysis, layer, inputs, outputs)
    else:
        _ignored(analysis, layer, inputs, outputs)


def _ignored(analysis, layer, inputs, outputs):
    """A layer the user excluded: its inputs and outputs are not prunable."""
    for tensor in inputs:
        analysis.block(analysis.layout(tensor), f"ignored layer {layer.name!r}")
    for tensor in outputs:
        space = analysis.new_space(tensor.shape[-1])
        analysis.blocked[space] = f"ignored layer {layer.name!r}"
        analysis.tensors[id(tensor)] = Layout.single(space, tensor.shape[-1])


_PASS_THROUGH_TYPES = (
    keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
    keras.layers.PReLU, keras.layers.Softmax, keras.layers.Dropout, keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D, keras.layers.GaussianNoise, keras.layers.Identity,
    keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D, keras.layers.AveragePooling2D, keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
    keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.Cropping2D,
    keras.layers.UpSampling2D, keras.layers.Rescaling, keras.layers.Normalization,
)

#: Layer type -> rule ``(analysis, layer, input_tensors, output_tensors)``; looked up
#: along the type's MRO, so subclasses inherit their base's rule.
LAYER_RULES: dict[type, Callable] = {
    **dict.fromkeys(_PASS_THROUGH_TYPES, _pass_through),
    keras.layers.Conv1D: _source, keras.layers.Conv2D: _source, keras.layers.Conv3D: _source,
    keras.layers.SeparableConv1D: _source, keras.layers.SeparableConv2D: _source,
    keras.layers.Dense: _source,
    keras.layers.BatchNormalization: _follow, keras.layers.DepthwiseConv2D: _follow,
    keras.layers.Add: _merge, keras.layers.Subtract: _merge, keras.layers.Multiply: _merge,
    keras.layers.Average: _merge, keras.layers.Maximum: _merge, keras.layers.Minimum: _merge,
    keras.layers.Concatenate: _concatenate, keras.layers.Flatten: _flatten,
    keras.layers.Reshape: _reshape,
}

#: Names of the built-in rules, for ``register_layer_rule(layer_type, "pass_through")``.
RULES_BY_NAME = {"source": _source, "follow": _follow, "pass_through": _pass_through,
                 "merge": _merge, "concatenate": _concatenate, "flatten": _flatten,
                 "ignored": _ignored}


def register_layer_rule(layer_type: type, rule) -> None:
    """Tells the analysis how a layer type treats channels.

    Args:
        layer_type: A ``keras.layers.Layer`` subclass.
        rule: One of ``"source"``, ``"follow"``, ``"pass_through"``, ``"merge"``,
            ``"concatenate"``, ``"flatten"``, or a callable
            ``rule(analysis, layer, input_tensors, output_tensors)``.
    """
    if isinstance(rule, str):
        if rule not in RULES_BY_NAME:
            raise ValueError(f"unknown rule {rule!r}; choose from {sorted(RULES_BY_NAME)}.")
        rule = RULES_BY_NAME[rule]
    LAYER_RULES[layer_type] = rule


def rule_for(layer):
    """The channel rule of a layer's type (looked up along its MRO), or None."""
    return lookup(LAYER_RULES, layer)


def nodes_in_order(model: keras.Model):
    """The model's call nodes in topological order (inputs first)."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None:
        raise GraphError(
            f"model {model.name!r} ({type(model).__name__}) is not a functional graph; "
            "channel groups need a functional or Sequential model built on keras.Input."
        )
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


class ChannelGraph:
    """The dependency analysis of one model: its groups and each layer's channel parts.

    Args:
        model: A built functional (or Sequential) Keras model.
        ignored_layers: Names of layers the analysis must not look into; channels
            touching them are never pruned.

    Raises:
        GraphError: For a layer type without a rule (naming the layer and type),
            a shared layer, or a subclassed model.
    """

    def __init__(self, model: keras.Model, ignored_layers=()):
        self.model = model
        self.ignored_layers = set(ignored_layers)
        known = {layer.name for layer in model.layers}
        unknown = sorted(self.ignored_layers - known)
        if unknown:
            raise GraphError(f"ignored_layers: no layer named {unknown} in model {model.name!r}.")
        self._analysis = self._analyse()
        self.groups = self._collect_groups()
        self._group_of_root = {g_root: g.index for g_root, g in self._roots.items()}

    def _analyse(self) -> _Analysis:
        analysis = _Analysis()
        nodes = list(nodes_in_order(self.model))  # refuses subclassed models first
        for tensor in self.model.inputs:
            space = analysis.new_space(tensor.shape[-1])
            analysis.blocked[space] = "the model input"
            analysis.tensors[id(tensor)] = Layout.single(space, tensor.shape[-1])
        self.layer_inputs: dict[str, Layout] = {}
        self.layer_outputs: dict[str, Layout] = {}
        for node in nodes:
            layer = node.operation
            if node.is_input or isinstance(layer, keras.layers.InputLayer):
                continue
            if len(layer._inbound_nodes) > 1:
                raise GraphError(f"layer {layer.name!r} is called {len(layer._inbound_nodes)} "
                                 "times; shared layers are not supported.")
            rule = _ignored if layer.name in self.ignored_layers else rule_for(layer)
            if rule is None:
                raise GraphError(
                    f"layer {layer.name!r} of type {type(layer).__name__}: the channel analysis "
                    "has no rule for it. Pass ignored_layers=[...] with its name (its channels "
                    "are then never pruned) or register_layer_rule(type, rule)."
                )
            rule(analysis, layer, list(node.input_tensors), list(node.output_tensors))
            self.layer_inputs[layer.name] = analysis.layout(node.input_tensors[0])
            self.layer_outputs[layer.name] = analysis.layout(node.output_tensors[0])
        for tensor in self.model.outputs:
            analysis.block(analysis.layout(tensor), "a model output")
        return analysis

    def _collect_groups(self) -> list[ChannelGroup]:
        analysis = self._analysis
        order = {layer.name: i for i, layer in enumerate(self.model.layers)}
        self._roots: dict[int, ChannelGroup] = {}
        groups = []
        for space in range(len(analysis.parent)):
            root = analysis.find(space)
            if root != space or analysis.blocked[root] or not analysis.roles[root]["sources"]:
                continue
            roles = {role: sorted(names, key=order.__getitem__)
                     for role, names in analysis.roles[root].items()}
            group = ChannelGroup(len(groups), analysis.sizes[root], roles["sources"],
                                 roles["followers"], roles["consumers"])
            groups.append(group)
            self._roots[root] = group
        return groups

    def group_of_space(self, space: int) -> ChannelGroup | None:
        """The prunable group a channel space belongs to, or None if it is not prunable."""
        return self._roots.get(self._analysis.find(space))

    def output_group(self, layer_name: str) -> ChannelGroup | None:
        """The prunable group of a layer's output channels, or None."""
        layout = self.layer_outputs[layer_name]
        if len(layout.spaces) != 1 or layout.tiles != 1:
            return None
        return self.group_of_space(layout.spaces[0][0])

    def channel_mask(self, layout: Layout, keep: dict[int, np.ndarray]) -> np.ndarray | None:
        """The keep-mask of a tensor's last axis from group masks; None if nothing is removed.

        Args:
            layout: The tensor's ``Layout`` (e.g. ``layer_inputs[name]``).
            keep: ``{group index: boolean keep-mask}``.
        """
        pieces, touched = [], False
        for space, size in layout.spaces:
            group = self.group_of_space(space)
            mask = None if group is None else keep.get(group.index)
            touched = touched or mask is not None
            pieces.append(np.ones(size, bool) if mask is None else np.asarray(mask, bool))
        return np.tile(np.concatenate(pieces), layout.tiles) if touched else None


def channel_groups(model: keras.Model, ignored_layers=()) -> list[ChannelGroup]:
    """Finds the groups of channels that must be pruned together.

    Args:
        model: A built functional or Sequential Keras model (the builders'
            models, keras.applications models, your own).
        ignored_layers: Names of layers to leave alone (their channels are
            never pruned), e.g. a custom layer the analysis does not know.

    Returns:
        The prunable groups in graph order; each has ``.members`` (layer names
        whose channels it removes together), ``.size`` (channel count),
        ``.sources`` (the layers whose scores rank it).

    Raises:
        GraphError: For a layer it cannot analyse (naming the layer and its type).

    Example:
        >>> for group in tfprune.channel_groups(model):
        ...     print(group.size, group.members)
    """
    return ChannelGraph(model, ignored_layers).groups
