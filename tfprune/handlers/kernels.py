"""Handlers of layers with kernels: convolutions, dense layers, embeddings."""

from __future__ import annotations

import keras
import numpy as np

from tfprune.handlers.base import (
    LayerHandler,
    axis_mask,
    bias_masks,
    block,
    follow,
    follow_unless,
    source,
    spatial_positions,
    take,
)
from tfprune.handlers.channel_analysis import GraphError


class Source(LayerHandler):
    """A kernel ``(..., in, out)`` making new output channels (Dense, ungrouped convs)."""

    scored_kernel = "kernel"
    kernel_attributes = ("kernel",)
    #: Axes of the kernel indexing (input, output) channels.
    in_axis, out_axis = -2, -1
    #: The config key holding the output channel count.
    size_key = "filters"

    def analyse(self, analysis, layer, inputs, outputs):
        source(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        kernel = getattr(layer, self.scored_kernel)
        mask = np.ones(kernel.shape, np.float32)
        if out_mask is not None:
            mask *= axis_mask(kernel.shape, out_mask, self.out_axis)
        if in_mask is not None:
            mask *= axis_mask(kernel.shape, in_mask, self.in_axis)
        if out_mask is None and in_mask is None:
            return []
        return [(kernel, mask), *bias_masks(layer, out_mask)]

    def slim(self, layer, context):
        config = layer.get_config()
        out_index, in_index = context.output_index(layer), context.input_index(layer)
        if out_index is not None:
            config[self.size_key] = int(out_index.size)
        weights = layer.get_weights()
        weights[0] = take(take(weights[0], out_index, self.out_axis), in_index, self.in_axis)
        if len(weights) > 1:
            weights[1] = take(weights[1], out_index, 0)
        return config, weights


class Conv(Source):
    """Conv1D/2D/3D, grouped ones (``groups > 1``) too.

    A grouped convolution's ``groups`` split its input and its output channels
    into equal contiguous parts; part ``p`` of the outputs reads only part
    ``p`` of the inputs through the kernel rows ``0 .. in / groups``. Channels
    are then removed so that every part keeps the same count, on both sides
    (the plan rounds to that, ``tfprune.pruning.rounding.even_parts``). A
    convolution with one input and one output channel per group is a
    depthwise convolution: it follows its input's channels.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        layout = analysis.layout(inputs[0])
        if layer.groups == 1:
            source(analysis, layer, inputs, outputs)
        elif self._depthwise(layer):
            follow(analysis, layer, inputs, outputs)
        else:
            source(analysis, layer, inputs, outputs)
            name = analysis.name_of(layer)
            analysis.constrain(analysis.layout(outputs[0]), name, parts=layer.groups)
            if layout.plain:
                analysis.constrain(layout, name, parts=layer.groups)
            else:
                analysis.block(layout, f"{layer.name!r}: a grouped convolution keeps the "
                               "channels of a concatenated input")

    @staticmethod
    def _depthwise(layer) -> bool:
        return layer.groups > 1 and layer.kernel.shape[-2] == 1 and layer.groups == layer.filters

    @staticmethod
    def _input_rows(layer, in_mask) -> np.ndarray:
        """``(in / groups, filters)``: whether filter ``f`` keeps its kernel row ``r``."""
        rows, filters = layer.kernel.shape[-2], layer.filters
        part = np.arange(filters) // (filters // layer.groups)
        return np.asarray(in_mask, bool)[part[None, :] * rows + np.arange(rows)[:, None]]

    def variable_masks(self, layer, in_mask, out_mask):
        if layer.groups == 1:
            return super().variable_masks(layer, in_mask, out_mask)
        if self._depthwise(layer):  # follows: in_mask is the channels' mask
            return [] if in_mask is None else [
                (layer.kernel, axis_mask(layer.kernel.shape, in_mask, -1)),
                *bias_masks(layer, in_mask)]
        mask = np.ones(layer.kernel.shape, np.float32)
        if out_mask is not None:
            mask *= axis_mask(mask.shape, out_mask, -1)
        if in_mask is not None:
            mask *= np.broadcast_to(self._input_rows(layer, in_mask), mask.shape)
        if out_mask is None and in_mask is None:
            return []
        return [(layer.kernel, mask), *bias_masks(layer, out_mask)]

    def slim(self, layer, context):
        if layer.groups == 1:
            return super().slim(layer, context)
        config, weights = layer.get_config(), layer.get_weights()
        if self._depthwise(layer):
            index = context.input_index(layer)
            if index is not None:
                config["filters"] = config["groups"] = int(index.size)
            return config, [take(w, index, -1) for w in weights]
        out_index, in_index = context.output_index(layer), context.input_index(layer)
        kernel = weights[0]
        if in_index is not None:  # each part's filters keep the rows of its kept inputs
            kept_inputs = np.zeros(kernel.shape[-2] * layer.groups, bool)
            kept_inputs[in_index] = True
            rows = self._input_rows(layer, kept_inputs)
            per_part = layer.filters // layer.groups
            kernel = np.concatenate([
                take(kernel[..., p * per_part:(p + 1) * per_part],
                     np.flatnonzero(rows[:, p * per_part]), -2)
                for p in range(layer.groups)], axis=-1)
        if out_index is not None:
            config["filters"] = int(out_index.size)
            kernel = take(kernel, out_index, -1)
        return config, [kernel, *(take(b, out_index, 0) for b in weights[1:])]


class DenseHandler(Source):
    """Dense: ``units`` output channels, on inputs of any rank (transformer MLPs too)."""

    size_key = "units"


class EinsumDenseHandler(Source):
    """EinsumDense whose equation is a Dense on the last axis (``...c,cd->...d``).

    Its ``d`` outputs are channels like Dense's units (a transformer MLP written
    with EinsumDense). Other equations (attention projections with a head axis,
    contractions over several axes) keep their channels, with the reason.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        if not dense_like(layer.equation, layer.bias_axes):
            block(analysis, layer, inputs, outputs,
                  f"EinsumDense equation {layer.equation!r} is not a Dense on the last axis "
                  "(...c,cd->...d), so its channels are kept")
            return
        source(analysis, layer, inputs, outputs)

    def slim(self, layer, context):
        config, weights = super().slim(layer, context)
        out_index = context.output_index(layer)
        if out_index is not None:
            shape = config["output_shape"]
            config["output_shape"] = ((*shape[:-1], int(out_index.size))
                                      if isinstance(shape, list | tuple) else int(out_index.size))
        config.pop(self.size_key, None)
        return config, weights


def dense_like(equation: str, bias_axes: str | None) -> bool:
    """Whether an einsum equation is a Dense on the last axis.

    That is: the last input axis times a 2-D kernel gives the last output axis,
    the other axes are left as they are, and the bias (if any) is on that axis.
    """
    try:
        inputs, rest = equation.replace(" ", "").split(",")
        kernel, output = rest.split("->")
    except ValueError:
        return False
    return (len(kernel) == 2 and inputs[-1:] == kernel[0] and output[-1:] == kernel[1]
            and output[:-1] == inputs[:-1] and kernel[1] not in inputs
            and bias_axes in (None, "", kernel[1]))


class ConvTranspose(Source):
    """Conv1D/2D/3DTranspose: the kernel is ``(..., out, in)``; FLOPs per input position."""

    filter_axis = -2
    in_axis, out_axis = -1, -2

    def flops(self, call, kept):
        positions = spatial_positions(call.inputs[0], call.operation)
        return 2 * positions * kept(call.operation.kernel)


class Separable(LayerHandler):
    """SeparableConv1D/2D: depthwise then pointwise; the pointwise columns are the filters.

    Input channel ``c`` feeds the pointwise rows ``c * depth_multiplier + m``.
    """

    scored_kernel = "pointwise_kernel"
    kernel_attributes = ("depthwise_kernel", "pointwise_kernel")

    def analyse(self, analysis, layer, inputs, outputs):
        source(analysis, layer, inputs, outputs)

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None and out_mask is None:
            return []
        depthwise = np.ones(layer.depthwise_kernel.shape, np.float32)
        pointwise = np.ones(layer.pointwise_kernel.shape, np.float32)
        if in_mask is not None:
            depthwise *= axis_mask(depthwise.shape, in_mask, -2)
            pointwise *= axis_mask(pointwise.shape, np.repeat(in_mask, layer.depth_multiplier),
                                   -2)
        if out_mask is not None:
            pointwise *= axis_mask(pointwise.shape, out_mask, -1)
        return [(layer.depthwise_kernel, depthwise), (layer.pointwise_kernel, pointwise),
                *bias_masks(layer, out_mask)]

    def slim(self, layer, context):
        config = layer.get_config()
        out_index, in_index = context.output_index(layer), context.input_index(layer)
        if out_index is not None:
            config["filters"] = int(out_index.size)
        depthwise, pointwise, *bias = layer.get_weights()
        rows = None
        if in_index is not None:
            multiplier = layer.depth_multiplier
            rows = (in_index[:, None] * multiplier + np.arange(multiplier)).reshape(-1)
        weights = [take(depthwise, in_index, -2),
                   take(take(pointwise, out_index, -1), rows, -2)]
        return config, weights + [take(b, out_index, 0) for b in bias]


class Depthwise(LayerHandler):
    """DepthwiseConv1D/2D: one filter per input channel, so it follows its input's channels.

    With ``depth_multiplier > 1`` each input channel makes several outputs; its
    channels are then kept whole.
    """

    scored_kernel = "kernel"
    kernel_attributes = ("kernel",)

    def analyse(self, analysis, layer, inputs, outputs):
        multiplier = layer.depth_multiplier
        follow_unless(analysis, layer, inputs, outputs, None if multiplier == 1 else
                      f"depth_multiplier={multiplier} keeps its channels")

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None:
            return []
        return [(layer.kernel, axis_mask(layer.kernel.shape, in_mask, -2)),
                *bias_masks(layer, in_mask)]

    def slim(self, layer, context):
        index = context.input_index(layer)
        kernel, *bias = layer.get_weights()
        return layer.get_config(), [take(kernel, index, -2), *(take(b, index, 0) for b in bias)]


class EmbeddingHandler(LayerHandler):
    """Embedding: its output dimension is a new channel space (the table's columns)."""

    scored_kernel = "embeddings"

    def analyse(self, analysis, layer, inputs, outputs):
        source(analysis, layer, [], outputs)
        for tensor in inputs:  # token ids: no channels to prune
            analysis.block(analysis.layout(tensor), f"{layer.name!r}: token ids")

    def variable_masks(self, layer, in_mask, out_mask):
        if out_mask is None:
            return []
        return [(layer.embeddings, axis_mask(layer.embeddings.shape, out_mask, -1))]

    def slim(self, layer, context):
        config = layer.get_config()
        index = context.output_index(layer)
        if index is not None:
            config["output_dim"] = int(index.size)
        return config, [take(layer.get_weights()[0], index, -1)]


class ReversibleEmbeddingHandler(EmbeddingHandler):
    """``ReversibleEmbedding`` (Keras', keras-hub's): the table and the output projection.

    Called forward on token ids, its output channels are the table's columns
    (a new space: the hidden width of a language model). Called in reverse on
    hidden states (``reverse=True``: the logits of a causal LM), its input
    channels are those same columns, so the two calls share one space and the
    vocabulary logits keep their channels. ``reverse_embeddings`` (``(output_dim,
    input_dim)``, present unless the projection is tied to the table) loses the
    rows of the removed columns.
    """

    joins_own_calls = True
    scores_output_channels = False

    def analyse(self, analysis, layer, inputs, outputs):
        """A forward call makes (or joins) the columns' space; a reverse call reads it."""
        name = analysis.name_of(layer)
        columns = analysis.shared.get(id(layer))
        if inputs and "int" not in str(inputs[0].dtype):  # reverse: hidden -> vocabulary
            layout = analysis.layout(inputs[0])
            if columns is None or not layout.plain:
                analysis.block(layout, f"{name!r}: a reverse call on channels other than its "
                                       "table's columns")
            else:
                analysis.union(columns, layout.spaces[0][0], name)
                analysis.add_role(layout, "consumers", name)
            for tensor in outputs:
                analysis.new_tensor_space(tensor, blocked=f"{name!r}: vocabulary logits")
            return
        super().analyse(analysis, layer, inputs, outputs)
        space = analysis.layout(outputs[0]).spaces[0][0]
        if columns is None:
            analysis.shared[id(layer)] = space
        else:  # called forward again: the same columns
            analysis.union(columns, space, name)

    @staticmethod
    def _columns(in_mask, out_mask):
        """The columns' mask: a forward call's output, or (the last call) a reverse call's input."""
        return out_mask if out_mask is not None else in_mask

    def variable_masks(self, layer, in_mask, out_mask):
        """The table's columns and the untied projection's rows."""
        columns = self._columns(in_mask, out_mask)
        pairs = super().variable_masks(layer, None, columns)
        reverse = getattr(layer, "reverse_embeddings", None)
        if columns is not None and reverse is not None:
            pairs.append((reverse, axis_mask(reverse.shape, columns, 0)))
        return pairs

    def slim(self, layer, context):
        """The table's columns and the untied projection's rows sliced."""
        config = layer.get_config()
        index = context.output_index(layer)
        if index is None:
            index = context.input_index(layer)
        if index is not None:
            config["output_dim"] = int(index.size)
        reverse = getattr(layer, "reverse_embeddings", None)
        weights = [take(np.asarray(v), index, 0 if v is reverse else -1) for v in layer.weights]
        return config, weights


def _available(*names: str) -> tuple:
    """The ``keras.layers`` classes among ``names`` that this Keras version has."""
    return tuple(getattr(keras.layers, name) for name in names if hasattr(keras.layers, name))


class Recurrent(LayerHandler):
    """LSTM, GRU, SimpleRNN, ConvLSTM1D/2D/3D (and Bidirectional around one): input channels.

    The recurrent units are kept whole (each feeds every gate of the next
    timestep); the input channels are the rows of the cell's input kernel
    (``cell.kernel``: ``(input channels, gates x units)``; a ConvLSTM's is a
    conv kernel ``(..., input channels, gates x filters)``), so a conv or dense
    layer feeding the RNN (a CNN-LSTM) loses filters, and the RNN the rows they
    fed. A ``Bidirectional`` wrapper has two such kernels, one per direction.
    """

    def _cells(self, layer) -> list:
        if isinstance(layer, keras.layers.Bidirectional):
            return [layer.forward_layer.cell, layer.backward_layer.cell]
        return [layer.cell]

    def analyse(self, analysis, layer, inputs, outputs):
        if isinstance(layer, keras.layers.Bidirectional) and not isinstance(
                layer.forward_layer, RECURRENT):
            raise GraphError(f"{layer.name!r} wraps a {type(layer.forward_layer).__name__}, "
                             "not an LSTM, GRU or SimpleRNN.")
        analysis.add_role(analysis.layout(inputs[0]), "consumers", analysis.name_of(layer))
        for extra in inputs[1:]:  # initial states: units, kept whole
            analysis.block(analysis.layout(extra), f"{layer.name!r}: a recurrent state")
        for tensor in outputs:
            analysis.new_tensor_space(tensor, blocked=f"{layer.name!r}: recurrent units are "
                                      "kept whole (each feeds every gate of the next step)")
            analysis.add_role(analysis.layout(tensor), "sources", analysis.name_of(layer))

    def variable_masks(self, layer, in_mask, out_mask):
        if in_mask is None:
            return []
        return [(cell.kernel, axis_mask(cell.kernel.shape, in_mask, -2))
                for cell in self._cells(layer)]

    def slim(self, layer, context):
        index = context.input_index(layer)
        weights = layer.get_weights()
        per_cell = len(weights) // len(self._cells(layer))  # kernel first in each direction
        for first in range(0, len(weights), per_cell):
            weights[first] = take(weights[first], index, -2)
        config = layer.get_config()
        for key in ("layer", "backward_layer"):  # Bidirectional: rebuild for the new inputs
            if isinstance(config.get(key), dict):
                config[key] = {k: v for k, v in config[key].items() if k != "build_config"}
        return config, weights

    def kernels(self, layer) -> list:
        return [kernel for cell in self._cells(layer)
                for kernel in (cell.kernel, cell.recurrent_kernel)]

    def flops(self, call, kept):
        """Both kernels at every timestep (a ConvLSTM's at each of its state's positions)."""
        inputs = call.inputs[0].shape
        steps = inputs[1] or 1
        state = inputs[2:-1]  # a ConvLSTM's spatial input axes; none for LSTM / GRU / RNN
        positions = int(np.prod(call.outputs[0].shape[-1 - len(state):-1])) if state else 1
        return 2 * int(steps) * positions * sum(
            kept(kernel) for kernel in self.kernels(call.operation))


#: The recurrent layers ``Recurrent`` handles (alone or inside ``Bidirectional``).
RECURRENT = _available("LSTM", "GRU", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")

#: Built-in kernel handlers: layer classes -> handler.
KERNEL_HANDLERS = {
    _available("Conv1D", "Conv2D", "Conv3D"): Conv(),
    _available("Dense"): DenseHandler(),
    _available("EinsumDense"): EinsumDenseHandler(),
    _available("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"): ConvTranspose(),
    _available("SeparableConv1D", "SeparableConv2D"): Separable(),
    _available("DepthwiseConv1D", "DepthwiseConv2D"): Depthwise(),
    _available("Embedding"): EmbeddingHandler(),
    _available("ReversibleEmbedding"): ReversibleEmbeddingHandler(),
    (*RECURRENT, *_available("Bidirectional")): Recurrent(),
}
