"""Handlers of layers without channel weights: pass-through, merges, concatenation, reshapes."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.handlers.base import LayerHandler, block, merge, pass_through, take
from tfprune.handlers.channel_analysis import GraphError, Layout
from tfprune.keras_objects import InputSizedReshape
from tfprune.layer_configs import layer_config


class PassThrough(LayerHandler):
    """Pooling, activations, padding, cropping, upsampling, dropout: channels unchanged."""

    calls_independent = True


class PReLUHandler(LayerHandler):
    """PReLU: elementwise, with a slope per channel (sliced by slim)."""

    def slim(self, layer, context):
        index = context.input_index(layer)
        return layer.get_config(), [take(w, index, -1) for w in layer.get_weights()]


class ActivationHandler(LayerHandler):
    """``Activation``: elementwise, except softmax-like activations across the channels."""

    ACROSS_CHANNELS = ("softmax", "log_softmax", "sparsemax", "glu")

    def analyse(self, analysis, layer, inputs, outputs):
        name = getattr(layer.activation, "__name__", str(layer.activation))
        if name in self.ACROSS_CHANNELS:
            block(analysis, layer, inputs, outputs, f"activation {name} mixes the channels")
            return
        pass_through(analysis, layer, inputs, outputs)


class RescalingHandler(LayerHandler):
    """``Rescaling``: elementwise with a scalar scale and offset.

    A per-channel scale or offset keeps the channels whole (slim would have to
    slice the lists in the layer's config).
    """

    def analyse(self, analysis, layer, inputs, outputs):
        if np.ndim(layer.scale) or np.ndim(layer.offset):
            block(analysis, layer, inputs, outputs, "a per-channel scale or offset")
            return
        pass_through(analysis, layer, inputs, outputs)


class Merge(LayerHandler):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: the inputs share one channel space."""

    def analyse(self, analysis, layer, inputs, outputs):
        merge(analysis, layer, inputs, outputs)


class ConcatenateHandler(LayerHandler):
    """Concatenate on the channel axis: the output's parts are the inputs' parts."""

    def analyse(self, analysis, layer, inputs, outputs):
        if layer.axis not in (-1, len(outputs[0].shape) - 1):
            merge(analysis, layer, inputs, outputs)  # joined along another axis
            return
        layouts = [analysis.layout(tensor) for tensor in inputs]
        if any(layout.tiles != 1 for layout in layouts):
            raise GraphError(f"{layer.name!r}: concatenating flattened tensors.")
        analysis.set_layout(outputs[0], Layout(sum((lay.spaces for lay in layouts), ())))


def flatten(analysis, layer, inputs, outputs) -> None:
    """Each spatial position repeats the channels (index ``p * C + c``)."""
    layout = analysis.layout(inputs[0])
    tiles = int(np.prod(inputs[0].shape[1:-1]))
    analysis.set_layout(outputs[0], Layout(layout.spaces, layout.tiles * tiles))


class FlattenHandler(LayerHandler):
    """Flatten: the channels tile once per spatial position."""

    def analyse(self, analysis, layer, inputs, outputs):
        flatten(analysis, layer, inputs, outputs)


def reshape(analysis, layer, inputs, outputs) -> None:
    """Channels kept last pass through; a flattening tiles; anything else blocks."""
    in_shape, out_shape = inputs[0].shape[1:], outputs[0].shape[1:]
    if None in in_shape or None in out_shape:
        block(analysis, layer, inputs, outputs, "a reshape with unknown dimensions")
    elif out_shape[-1] == in_shape[-1] and np.prod(out_shape) == np.prod(in_shape):
        pass_through(analysis, layer, inputs, outputs)
    elif len(out_shape) == 1 and out_shape[0] == np.prod(in_shape):
        flatten(analysis, layer, inputs, outputs)
    else:
        block(analysis, layer, inputs, outputs, "a reshape that moves the channel axis")


class ReshapeHandler(LayerHandler):
    """Reshape layer or ``keras.ops.reshape``: the new shape's last axis shrinks with the channels.

    Args:
        shape_key: The config key holding the new shape (``target_shape`` for the
            layer, ``newshape`` for the op).
    """

    def __init__(self, shape_key: str = "target_shape"):
        self.shape_key = shape_key

    def analyse(self, analysis, layer, inputs, outputs):
        reshape(analysis, layer, inputs, outputs)

    def slim(self, layer, context):
        config = layer.get_config()
        index = context.output_index(layer)
        if index is not None:
            config[self.shape_key] = (*tuple(config[self.shape_key])[:-1], int(index.size))
        if self._reads_input_sizes(layer):
            config = {"newshape": config[self.shape_key], "name": layer.name,
                      "input_axes": _unknown_axes(layer, config[self.shape_key])}
        return config, []

    def rebuilt_class(self, layer, context) -> type:
        """``InputSizedReshape`` where the traced shape holds sizes read from the input."""
        return InputSizedReshape if self._reads_input_sizes(layer) else type(layer)

    def _reads_input_sizes(self, layer) -> bool:
        return None in tuple(getattr(layer, self.shape_key, None) or ())


def _unknown_axes(layer, newshape) -> list[int]:
    """The traced input's axes of unknown size, one per None of ``newshape``, in order.

    Raises:
        GraphError: When the shape holds more None entries than the input has
            unknown axes (a size read from another tensor).
    """
    traced = layer._inbound_nodes[0].input_tensors[0].shape
    axes = [axis for axis, size in enumerate(traced) if size is None]
    count = list(newshape).count(None)
    if count > len(axes):
        raise GraphError(f"{layer.name!r}: reshaping to {tuple(newshape)} reads sizes that "
                         f"are not its input's {tuple(traced)}; slim cannot replay it.")
    return axes[:count]


class PermuteHandler(LayerHandler):
    """Permute: channels pass when the last axis stays last, else they are kept whole."""

    def analyse(self, analysis, layer, inputs, outputs):
        if tuple(layer.dims)[-1] == len(layer.dims):
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs, f"Permute{tuple(layer.dims)} moves the channels")


class Ignored(LayerHandler):
    """A layer the user excluded: its channels are kept whole; slim copies it unchanged."""

    def analyse(self, analysis, layer, inputs, outputs):
        block(analysis, layer, inputs, outputs, "in ignored_layers")

    def slim(self, layer, context):
        return layer_config(layer), layer.get_weights()


class KeepWhole(LayerHandler):
    """A layer whose input and output channels are kept whole (copied as is by slim).

    Args:
        reason: Why, as the channel groups report it.
    """

    def __init__(self, reason: str = "tfprune cannot see what it computes"):
        self.reason = reason

    def analyse(self, analysis, layer, inputs, outputs):
        block(analysis, layer, inputs, outputs, self.reason)

    def slim(self, layer, context):
        return layer_config(layer), layer.get_weights()


def _available(*names: str) -> tuple:
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


_PASS_THROUGH = _available(
    "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity",
    "ActivityRegularization", "Masking",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "Resizing", "CenterCrop", "RandomFlip", "RandomCrop", "RandomRotation", "RandomZoom",
    "RandomTranslation", "RandomContrast", "RandomBrightness",
)

#: Built-in structural handlers: layer classes -> handler.
STRUCTURE_HANDLERS = {
    _PASS_THROUGH: PassThrough(),
    _available("Activation"): ActivationHandler(),
    _available("PReLU"): PReLUHandler(),
    _available("Rescaling"): RescalingHandler(),
    _available("Normalization"): KeepWhole(
        "Normalization holds a mean and variance per channel (adapted, not trainable)"),
    _available("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"): Merge(),
    _available("Concatenate"): ConcatenateHandler(),
    _available("Flatten"): FlattenHandler(),
    _available("Reshape"): ReshapeHandler(),
    _available("Permute"): PermuteHandler(),
    _available("Lambda"): KeepWhole("a Lambda layer, whose function tfprune cannot see"),
    _available("StringLookup", "IntegerLookup", "TextVectorization", "Hashing",
               "HashedCrossing", "CategoryEncoding", "Discretization"): KeepWhole(
        "a preprocessing layer: its outputs are token ids, bins or encodings, not channels"),
}
