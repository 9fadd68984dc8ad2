"""``LayerHandler``: everything tfprune knows about one layer or op type, and their registry.

A handler answers, for its type:

- ``analyse``: its channel rule. Does it create a channel space (a conv's
  filters), follow its input's channels (BatchNorm), pass them through (ReLU),
  merge its inputs' spaces (Add), map index ranges (Concatenate) or block them?
- ``scored_kernel`` / ``filter_axis``: which kernel importance measures score,
  and which of its axes indexes the output channels.
- ``variable_masks``: which of its weights lose entries, on which axis, when
  its input or output channels are removed.
- ``slim``: the config and weights of its rebuilt, smaller self.
- ``flops``: its forward-pass FLOPs (2 per multiply-accumulate) with some
  kernel entries removed.
- ``inner_units`` / ``inner_masks``: channel spaces inside the layer that no
  tensor shows (MultiHeadAttention's heads), scored over several kernels.

Channel groups, masks, scoring's list of prunable layers, slim and the
statistics all read handlers, never class names. ``register_layer_handler``
adds or replaces the handler of a type (looked up along the type's MRO, so
subclasses inherit their base's handler).
"""

from __future__ import annotations

import importlib

import keras
import numpy as np

from tfprune.handlers.channel_analysis import ChannelAnalysis, GraphError
from tfprune.layer_configs import layer_config


def attribute(layer, path: str):
    """``layer``'s attribute at a dotted ``path`` (``"query_dense.kernel"``)."""
    value = layer
    for name in path.split("."):
        value = getattr(value, name)
    return value


def take(array: np.ndarray, index, axis: int) -> np.ndarray:
    """``array`` with only ``index`` kept on ``axis`` (all of it when ``index`` is None)."""
    return array if index is None else np.take(array, index, axis=axis)


def axis_mask(shape, mask, axis: int) -> np.ndarray:
    """A float32 array of ``shape`` that is ``mask`` broadcast along ``axis``."""
    shape = tuple(shape)
    axis = axis % len(shape)
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(np.reshape(np.asarray(mask, np.float32), view), shape).copy()


def bias_masks(layer, out_mask) -> list:
    """``[(bias, output mask)]`` when the layer has a bias and its outputs are masked."""
    if getattr(layer, "bias", None) is None or out_mask is None:
        return []
    return [(layer.bias, np.asarray(out_mask, np.float32))]


#: Final activations whose input is the logits.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


class LayerHandler:
    """What tfprune needs to know about one layer (or keras.ops operation) type.

    Subclass it and override what differs; the defaults describe a layer
    without weights that passes its input's channels through unchanged.

    Attributes:
        scored_kernel: Attribute (dotted path) of the kernel importance measures
            score (None: the layer's outputs are not scored).
        filter_axis: Axis of that kernel indexing the layer's output channels.
        kernel_attributes: The kernels (dotted paths) whose multiply-accumulates
            count as FLOPs.
        calls_independent: The calls of one shared layer need not keep the
            same channels (its config and weights do not depend on them).
        joins_own_calls: The handler relates a shared layer's calls itself.

    Example:
        A custom layer scaling each channel by a trainable vector:

        >>> class ChannelScaleHandler(tfprune.handlers.LayerHandler):
        ...     def analyse(self, analysis, layer, inputs, outputs):
        ...         follow(analysis, layer, inputs, outputs)
        ...     def variable_masks(self, layer, in_mask, out_mask):
        ...         return [] if in_mask is None else [(layer.scale, in_mask)]
        ...     def slim(self, layer, context):
        ...         return layer.get_config(), [take(layer.get_weights()[0],
        ...                                          context.input_index(layer), -1)]
        >>> tfprune.register_layer_handler(ChannelScale, ChannelScaleHandler())
    """

    scored_kernel: str | None = None
    filter_axis: int = -1
    kernel_attributes: tuple = ()
    #: Whether the calls of one shared layer of this type may each keep other channels:
    #: true when neither its config nor its weights depend on the channel count (Dropout,
    #: pooling, activations), so ViT's MLP may reuse one Dropout on 3072 and 768 channels.
    calls_independent: bool = False
    #: Whether the handler relates the calls of one shared layer itself, instead of their
    #: tensors being joined position by position: a ``ReversibleEmbedding`` reads token ids
    #: forward and hidden states in reverse.
    joins_own_calls: bool = False
    #: Whether its scored filters are its output channels, so that a layer making a model
    #: output (a classifier) is not scored unless asked: a ``ReversibleEmbedding``'s are its
    #: table's columns (the hidden width), though its reverse call makes a causal LM's logits.
    scores_output_channels: bool = True
    #: Weight attribute -> the layer attributes its constraint may live in (the first one
    #: the layer has): where ``get_config`` finds the mask constraint, so it is saved with
    #: the model. Override for a type whose weights have other names.
    constraint_attributes: dict = {
        "kernel": ("kernel_constraint", "depthwise_constraint"), "bias": ("bias_constraint",),
        "gamma": ("gamma_constraint",), "beta": ("beta_constraint",),
        "depthwise_kernel": ("depthwise_constraint",),
        "pointwise_kernel": ("pointwise_constraint",),
        "embeddings": ("embeddings_constraint",),
    }

    def analyse(self, analysis: ChannelAnalysis, layer, inputs: list, outputs: list) -> None:
        """Records how the layer maps its inputs' channel spaces to its outputs'.

        Raises:
            GraphError: When the layer cannot be analysed as configured (the
                message says why; the analysis collects every such error).
        """
        pass_through(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask) -> list:
        """``[(variable, float mask of its shape)]`` for the removed input / output channels.

        Args:
            layer: The layer.
            in_mask: Boolean keep-mask of its (first) input's channels, or None.
            out_mask: Boolean keep-mask of its (first) output's channels, or None.
        """
        return []

    def slim(self, layer, context) -> tuple[dict, list]:
        """``(config, weights)`` of the rebuilt layer without the removed channels.

        Args:
            layer: The layer.
            context: Gives ``input_index(layer)`` / ``output_index(layer)``: the
                indices of the kept channels (None: all kept).
        """
        if layer.weights and context.input_index(layer) is not None:
            raise GraphError(f"layer {layer.name!r} ({type(layer).__name__}) has weights tied "
                             "to channels that its handler cannot slice; register a handler "
                             "with a slim method for it.")
        return layer_config(layer), layer.get_weights()

    def main_input(self, layer, inputs: list):
        """The input whose channels ``variable_masks`` and ``slim`` see as ``in_mask``.

        The first (default); an attention layer's query, wherever it comes.
        """
        return inputs[0]

    def rebuilt_class(self, layer, context) -> type:
        """The class ``slim`` builds the smaller layer as (default: the layer's own)."""
        return type(layer)

    def same_class_obstacle(self, layer, context) -> str | None:
        """Why a keras-hub model holding this layer cannot be slimmed into its own class.

        None (the default) if nothing about this layer stands in the way. The
        reason is said in the warning that ``slim`` builds a flat functional
        model instead.
        """
        return None

    def rescaled_weights(self, layer, context) -> list:
        """``[(variable, array)]``: weights whose kept values change when channels go.

        Most weights are only sliced. An RMS normalization's scale is also
        multiplied, since its mean divides by fewer channels. Each array has
        the variable's full shape; slicing it as the plan slices the variable
        gives the slimmed layer's values. Used where weights are copied by
        slicing rather than by ``slim`` (a model rebuilt as its own class,
        ``tfprune.slimming.same_class``).
        """
        return []

    def bind(self, layer) -> LayerHandler:
        """The handler of this one layer: ``self``, unless the type delegates.

        A wrapper (``TimeDistributed``) is handled as the layer it wraps, so
        its handler depends on the instance; ``handler_for`` calls this on the
        handler registered for the type.
        """
        return self

    def inner_units(self, layer) -> dict:
        """``{unit: (size, ((kernel path, axis), ...))}``: channel spaces inside the layer.

        A unit (MultiHeadAttention's ``"heads"``) is a channel space no tensor
        shows; ``analyse`` creates it with ``analysis.new_inner_space``, and it
        is scored as ``layer/unit`` over the slices of the kernels listed (the
        axis of each indexing the unit's channels).
        """
        return {}

    def inner_masks(self, layer, masks: dict) -> list:
        """``[(variable, float mask)]`` for ``{unit: boolean keep-mask}`` of its inner units."""
        return []

    def constraint_slots(self, layer) -> dict[int, tuple]:
        """``{id(variable): (layer, constraint attribute)}`` of the layer's maskable weights.

        ``MaskEnforcer`` puts its mask constraint in that attribute as well as on
        the variable (``constraint_attributes``).
        """
        slots = {}
        for weight, attributes in self.constraint_attributes.items():
            variable = getattr(layer, weight, None)
            found = [a for a in attributes if hasattr(layer, a)]
            if isinstance(variable, keras.Variable) and found:
                slots[id(variable)] = (layer, found[0])
        return slots

    def batch_statistics(self, layer):
        """The layer whose per-channel batch statistics this layer normalizes with, or None.

        A BatchNormalization holds them (moving mean and variance) itself; a
        wrapper answers with the layer it wraps.
        """
        return None

    def probability_activation(self, layer) -> str | None:
        """``"softmax"`` or ``"sigmoid"`` if the layer ends in that activation, else None.

        The layer's input (or its output before the activation) is then logits.
        """
        activation = getattr(layer, "activation", None)
        name = getattr(activation, "__name__", None) if activation is not None else None
        return name if name in PROBABILITY_ACTIVATIONS else None

    def kernels(self, layer) -> list:
        """The layer's kernel variables counted for FLOPs."""
        return [attribute(layer, name) for name in self.kernel_attributes]

    def flops(self, call, kept) -> int:
        """Forward FLOPs of one example: 2 x output positions x kept kernel entries.

        Args:
            call: The layer's call (``.operation``, ``.inputs``, ``.outputs``).
            kept: ``kept(variable) -> int``: its entries that remain after a plan.
        """
        kernels = self.kernels(call.operation)
        if not kernels:
            return 0
        positions = spatial_positions(call.outputs[0], call.operation)
        return 2 * positions * sum(kept(kernel) for kernel in kernels)


def channels_first(layer) -> bool:
    """Whether a layer reads its channels from axis 1 (``data_format="channels_first"``)."""
    return getattr(layer, "data_format", None) == "channels_first"


def spatial_positions(tensor, layer) -> int:
    """Positions of a tensor's spatial axes: all but the batch and ``layer``'s channel axis.

    An axis of unknown size (a sequence of any length) counts once: FLOPs are
    then per position along it.
    """
    shape = tensor.shape
    return int(np.prod([size or 1 for size in (shape[2:] if channels_first(layer)
                                                else shape[1:-1])]))


def unprunable_reason(layer) -> str | None:
    """Why a layer of a handled type must still be kept whole, or None.

    A ``channels_first`` layer has its channels on axis 1, where the analysis
    (reading every tensor's last axis, Keras' default ``channels_last``) does
    not look; a layer with LoRA enabled computes its kernel as the frozen
    kernel plus a low-rank product, which masks on the kernel cannot reach; a
    layer quantized by Keras (``model.quantize``) holds integer kernels.
    """
    if channels_first(layer):
        return "data_format='channels_first' (tfprune prunes channels_last layers, Keras' default)"
    if getattr(layer, "lora_enabled", False) or _lora_sublayers(layer):
        return ("LoRA is enabled (its kernel is the frozen kernel plus a low-rank product): "
                "prune before enable_lora(), or merge the LoRA weights into the kernel first")
    mode = getattr(layer, "quantization_mode", None)
    if mode:
        return (f"quantized by Keras ({mode}: integer kernels and scales): prune the float "
                "model, then quantize it")
    return None


def _lora_sublayers(layer) -> list:
    """The layer's sublayers (attention projections) with LoRA enabled."""
    flattened = getattr(layer, "_flatten_layers", None)
    parts = flattened(include_self=False) if flattened else []
    return [part for part in parts if getattr(part, "lora_enabled", False)]


class Unprunable(LayerHandler):
    """A layer of a handled type kept whole (``unprunable_reason``), its FLOPs still counted.

    Its input and output channels are blocked, its output named as produced by
    it (so ``ChannelGraph.kept_whole`` lists it with the reason); slim copies it
    as is; it is not scored.

    Args:
        handler: The layer type's own handler (for its kernels and FLOPs).
        reason: Why it is kept whole.
    """

    def __init__(self, handler: LayerHandler, reason: str):
        self.handler = handler
        self.reason = reason

    def analyse(self, analysis, layer, inputs, outputs):
        """Blocks the layer's input and output channels."""
        block(analysis, layer, inputs, outputs, self.reason)
        for tensor in outputs:
            analysis.add_role(analysis.layout(tensor), "sources", analysis.name_of(layer))

    def slim(self, layer, context):
        """The layer as it is.

        Raises:
            GraphError: When LoRA was enabled on its sublayers (attention
                projections), which its config does not record, so a copy
                cannot be rebuilt.
        """
        if _lora_sublayers(layer):
            raise GraphError(f"{layer.name!r}: LoRA is enabled on its sublayers, which its "
                             "config does not record, so slim cannot rebuild it; merge the "
                             "LoRA weights into the kernels first.")
        return layer_config(layer), layer.get_weights()

    def kernels(self, layer) -> list:
        """The type's own handler's kernels."""
        return self.handler.kernels(layer)

    def main_input(self, layer, inputs: list):
        """The type's own handler's main input."""
        return self.handler.main_input(layer, inputs)

    def flops(self, call, kept) -> int:
        """The type's own handler's FLOPs (spatial positions of channels_first on axes 2+)."""
        return self.handler.flops(call, kept)


# -- channel rules shared by the built-in handlers ------------------------------------------

def pass_through(analysis: ChannelAnalysis, layer, inputs, outputs) -> None:
    """The output has the input's channels (pooling, activations, padding, dropout)."""
    if outputs[0].shape[-1] != inputs[0].shape[-1]:
        raise GraphError(f"{layer.name!r} ({type(layer).__name__}) changes the channel count "
                         f"({inputs[0].shape[-1]} -> {outputs[0].shape[-1]}).")
    analysis.set_layout(outputs[0], analysis.layout(inputs[0]))


def follow(analysis: ChannelAnalysis, layer, inputs, outputs) -> None:
    """Per-channel weights on the input's channels (BatchNorm, DepthwiseConv).

    The input may be a concatenation (DenseNet's BN after Concatenate): the
    layer then follows every space in it.
    """
    layout = analysis.layout(inputs[0])
    if layout.tiles != 1:
        raise GraphError(f"{layer.name!r} ({type(layer).__name__}) follows a flattened tensor.")
    analysis.add_role(layout, "followers", analysis.name_of(layer))
    analysis.set_layout(outputs[0], layout)


def follow_unless(analysis: ChannelAnalysis, layer, inputs, outputs, why: str | None) -> None:
    """``follow``, or ``block`` for ``why`` when the layer cannot follow as configured."""
    if why:
        block(analysis, layer, inputs, outputs, why)
    else:
        follow(analysis, layer, inputs, outputs)


def source(analysis: ChannelAnalysis, layer, inputs, outputs) -> None:
    """Consumes its input channels and creates a new space for its output channels."""
    if inputs:
        analysis.add_role(analysis.layout(inputs[0]), "consumers", analysis.name_of(layer))
    space = analysis.new_tensor_space(outputs[0])
    analysis.roles[space]["sources"].append(analysis.name_of(layer))


def block(analysis: ChannelAnalysis, layer, inputs, outputs, why: str) -> None:
    """Neither the inputs' nor the outputs' channels may be pruned, for ``why``."""
    reason = f"{layer.name!r}: {why}"
    for tensor in inputs:
        analysis.block(analysis.layout(tensor), reason)
    for tensor in outputs:
        analysis.new_tensor_space(tensor, blocked=reason)


def merge(analysis: ChannelAnalysis, layer, inputs, outputs) -> None:
    """Every input with the output's channel count and the output share their channels.

    An input with another channel count (a broadcast scalar or gate of one
    channel) joins nothing. Inputs that are concatenations (NASNet's cells)
    join part by part when their parts line up; when they do not, the
    channels are kept whole.
    """
    joined = [tensor for tensor in inputs if tensor.shape[-1] == outputs[0].shape[-1]]
    if not joined:
        raise GraphError(f"{layer.name!r} ({type(layer).__name__}): no input has the output's "
                         f"{outputs[0].shape[-1]} channels.")
    layouts = [analysis.layout(tensor) for tensor in joined]
    parts = {tuple(size for _, size in layout.spaces) + (layout.tiles,) for layout in layouts}
    if len(parts) != 1:
        block(analysis, layer, inputs, outputs, "joins tensors whose channel parts differ")
        return
    for layout in layouts[1:]:
        for (first, _), (space, _) in zip(layouts[0].spaces, layout.spaces, strict=True):
            analysis.union(first, space, analysis.name_of(layer))
    analysis.set_layout(outputs[0], layouts[0])


# -- the registry ------------------------------------------------------------------------------

#: Layer or operation type -> its ``LayerHandler``; looked up along the type's MRO.
HANDLERS: dict[type, LayerHandler] = {}


def register_layer_handler(layer_type: type, handler) -> None:
    """Tells tfprune how a layer (or keras.ops operation) type treats channels.

    Args:
        layer_type: A ``keras.layers.Layer`` (or ``keras.Operation``) subclass.
        handler: A ``LayerHandler`` instance or subclass.

    Raises:
        TypeError: If either argument is of the wrong kind.

    Example:
        >>> tfprune.register_layer_handler(MyActivation, tfprune.handlers.PassThrough())
    """
    if isinstance(handler, type) and issubclass(handler, LayerHandler):
        handler = handler()
    if not isinstance(handler, LayerHandler):
        raise TypeError(f"handler must be a tfprune LayerHandler, got {handler!r}.")
    if not isinstance(layer_type, type):
        raise TypeError(f"layer_type must be a class, got {layer_type!r}.")
    HANDLERS[layer_type] = handler


#: Module prefix of an optional library -> the tfprune module registering its layers'
#: handlers (with ``register_handlers()``), imported the first time such a layer is met.
OPTIONAL_FAMILIES = {"keras_hub.": "tfprune.handlers.hub"}
_loaded_families: set[str] = set()
#: Module prefix -> ``fallback(layer, why) -> LayerHandler`` for that library's layers that no
#: handler describes (filled by the family's ``register_handlers``); see ``fallback_handler``.
FALLBACK_HANDLERS: dict = {}


def _load_family(layer) -> None:
    module = type(layer).__module__
    for prefix, family in OPTIONAL_FAMILIES.items():
        if module.startswith(prefix) and family not in _loaded_families:
            _loaded_families.add(family)
            importlib.import_module(family).register_handlers()


def fallback_handler(layer, why: str) -> LayerHandler | None:
    """The handler of a layer nothing describes, from its library's fallback, else None.

    Used only after a layer could neither be handled nor traced: keras-hub's
    layers are then kept whole rather than refused.

    Args:
        layer: The layer.
        why: Why it could not be analysed (for the kept-whole reason).
    """
    module = type(layer).__module__
    for prefix, fallback in FALLBACK_HANDLERS.items():
        if module.startswith(prefix):
            return fallback(layer, why)
    return None


def handler_for(layer) -> LayerHandler | None:
    """The handler of ``type(layer)`` or its nearest registered base class, else None."""
    _load_family(layer)
    for cls in type(layer).__mro__:
        if cls in HANDLERS:
            handler = HANDLERS[cls].bind(layer)
            reason = unprunable_reason(layer)
            return Unprunable(handler, reason) if reason else handler
    return None
