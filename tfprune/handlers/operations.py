"""Handlers of keras.ops operation nodes in functional graphs (``x + 3.0``, ``ops.mean``).

Calling a ``keras.ops`` function on a symbolic tensor puts an operation node
into the functional graph (MobileNetV3's hard-sigmoid is ``relu6(x + 3) / 6``).
These nodes are not layers: they have no weights, and their names (``add``,
``add_1``, ...) are what ``ignored_layers`` takes.

- Elementwise ops of one tensor (with scalars): channels pass through. So do
  comparisons (``not_equal(x, 0)``: the masks Embedding(mask_zero=True) and
  Masking compute are such nodes).
- Elementwise ops of several tensors: the tensors with the output's channel
  count share one channel space (like an ``Add`` layer).
- Concatenation on the channel axis maps index ranges.
- Reductions over other axes pass channels through; over the channel axis
  they block.
- ``zeros_like`` / ``ones_like`` / ``full_like`` pass (a constant per channel).
- Reshapes, transposes and moveaxis that keep the channel axis last pass; others block,
  as do ops that mix channels (softmax, matmul, einsum, ...).
- Indexing (``x[:, 0, :]``) passes when its key leaves the channel axis whole and last.
"""

from __future__ import annotations

import numpy as np
from keras.src.ops import core as core_ops
from keras.src.ops import math as math_ops
from keras.src.ops import nn as nn_ops
from keras.src.ops import numpy as numpy_ops

from tfprune.handlers.base import PROBABILITY_ACTIVATIONS, LayerHandler, block, merge, pass_through
from tfprune.handlers.channel_analysis import GraphError, Layout
from tfprune.handlers.structure import ReshapeHandler


class OperationHandler(LayerHandler):
    """Base of the op handlers: slim re-creates the op from its config."""

    def slim(self, layer, context):
        return layer.get_config(), []

    def probability_activation(self, layer):
        name = type(layer).__name__.lower()  # keras.ops.softmax / sigmoid nodes
        return name if name in PROBABILITY_ACTIVATIONS else None


class ElementwiseOp(OperationHandler):
    """Elementwise ops: one tensor passes its channels; several merge theirs.

    One tensor broadcast against a constant of another last axis (a mask
    built at traced sizes: T5Gemma's) keeps its channels whole.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        if len(inputs) == 1 and outputs[0].shape[-1] != inputs[0].shape[-1]:
            block(analysis, layer, inputs, outputs, "broadcast against a constant of another "
                  "channel count")
        elif len(inputs) == 1:
            pass_through(analysis, layer, inputs, outputs)
        else:
            merge(analysis, layer, inputs, outputs)


def _axes(operation, rank: int) -> set[int] | None:
    """The op's ``axis`` as non-negative axes (None: every axis)."""
    axis = getattr(operation, "axis", None)
    if axis is None:
        return None
    axes = axis if isinstance(axis, list | tuple) else [axis]
    return {int(a) % rank for a in axes}


class ReductionOp(OperationHandler):
    """mean / sum / max / ... : channels pass when the channel axis is not reduced."""

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        axes = _axes(layer, rank)
        if axes is None or rank - 1 in axes:
            block(analysis, layer, inputs, outputs, "a reduction over the channel axis")
            return
        pass_through(analysis, layer, inputs, outputs)


class ConcatenateOp(OperationHandler):
    """ops.concatenate: on the channel axis the output's parts are the inputs' parts."""

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(outputs[0].shape)
        if (layer.axis or 0) % rank != rank - 1:
            merge(analysis, layer, inputs, outputs)
            return
        layouts = [analysis.layout(tensor) for tensor in inputs]
        if any(layout.tiles != 1 for layout in layouts):
            raise GraphError(f"{layer.name!r}: concatenating flattened tensors.")
        analysis.set_layout(outputs[0], Layout(sum((lay.spaces for lay in layouts), ())))


class SplitOp(OperationHandler):
    """ops.split: every part keeps the channels, or on the channel axis the parts it covers.

    A split of the channel axis maps index ranges like Concatenate backwards:
    it is followed where its split points fall between the input's channel
    parts (a concatenation split again); a split through one part (a fused
    query / key / value projection split in three) keeps the channels whole.
    The slimmed op splits at the kept channels' new boundaries.
    """

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        layout = analysis.layout(inputs[0])
        if layer.axis % rank != rank - 1:
            for tensor in outputs:
                analysis.set_layout(tensor, layout)
            return
        parts = self._parts(layout, [tensor.shape[-1] for tensor in outputs])
        if parts is None:
            block(analysis, layer, inputs, outputs, "splits through a channel space")
            return
        for tensor, spaces in zip(outputs, parts, strict=True):
            analysis.set_layout(tensor, Layout(spaces))

    @staticmethod
    def _parts(layout: Layout, sizes: list[int]) -> list[tuple] | None:
        """The input's spaces that make up each output, or None if a split cuts a space."""
        if layout.tiles != 1:
            return None
        parts, spaces = [], list(layout.spaces)
        for size in sizes:
            taken = []
            while size > 0 and spaces and spaces[0][1] <= size:
                taken.append(spaces.pop(0))
                size -= taken[-1][1]
            if size:
                return None
            parts.append(tuple(taken))
        return parts

    def slim(self, layer, context):
        config = layer.get_config()
        kept = context.input_index(layer)
        rank = len(layer._inbound_nodes[0].input_tensors[0].shape)
        if kept is None or layer.axis % rank != rank - 1:
            return config, []
        sizes = [tensor.shape[-1] for tensor in layer._inbound_nodes[0].output_tensors]
        ends = np.cumsum(sizes)[:-1]
        config["indices_or_sections"] = [int(np.sum(kept < end)) for end in ends]
        return config, []


class TransposeOp(OperationHandler):
    """ops.transpose: channels pass when the last axis stays last."""

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        axes = getattr(layer, "axes", None)
        if axes is not None and int(axes[-1]) % rank == rank - 1:
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs, "a transpose that moves the channel axis")


class MoveaxisOp(OperationHandler):
    """ops.moveaxis: channels pass when the last axis stays last."""

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        sizes = np.empty(tuple(range(1, rank + 1)), bool)  # axis i has i + 1 entries
        if np.moveaxis(sizes, layer.source, layer.destination).shape[-1] == rank:
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs, "a moveaxis that moves the channel axis")


class UnstackOp(OperationHandler):
    """ops.unstack: each slice has the input's channels while another axis is unstacked."""

    def analyse(self, analysis, layer, inputs, outputs):
        rank = len(inputs[0].shape)
        if int(layer.axis) % rank == rank - 1:
            block(analysis, layer, inputs, outputs, "an unstack of the channel axis")
            return
        layout = analysis.layout(inputs[0])
        for output in outputs:
            analysis.set_layout(output, layout)


class ShapeOp(OperationHandler):
    """expand_dims / squeeze: channels pass while the last axis keeps its size."""

    def analyse(self, analysis, layer, inputs, outputs):
        if outputs[0].shape[-1] == inputs[0].shape[-1] and len(outputs[0].shape) > 1:
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs, "a reshape of the channel axis")


class MixingOp(OperationHandler):
    """Ops that mix or select channels (softmax, matmul, slicing): channels kept whole."""

    def analyse(self, analysis, layer, inputs, outputs):
        block(analysis, layer, inputs, outputs,
              f"keras.ops.{type(layer).__name__.lower()} mixes or selects channels")


class GetItemOp(OperationHandler):
    """``x[key]``: channels pass when the key leaves the channel axis whole and last.

    The key (read from the op's call) is tried on a probe holding each
    channel's index: ``x[:, 0, :]`` (BERT's pooled token) or ``x[:, -1]``
    keeps every channel in order and passes; a key that slices, reorders or
    moves the channel axis, or is a tensor, keeps the channels whole.
    """

    #: The size an axis of unknown size (a sequence) takes in the probe.
    UNKNOWN_SIZE = 64

    def analyse(self, analysis, layer, inputs, outputs):
        if self._keeps_channels(layer, inputs[0], outputs[0]):
            pass_through(analysis, layer, inputs, outputs)
            return
        block(analysis, layer, inputs, outputs,
              "keras.ops.getitem selects or moves channels (or its key is a tensor)")

    def _keeps_channels(self, layer, tensor, output) -> bool:
        nodes = getattr(layer, "_inbound_nodes", None)
        arguments = nodes[0].arguments if nodes else None
        if arguments is None or len(arguments.args) != 2 or arguments.kwargs:
            return False
        key = arguments.args[1]
        channels = tensor.shape[-1]
        if channels is None or output.shape[-1] != channels or len(output.shape) < 2:
            return False
        shape = [self.UNKNOWN_SIZE if size is None else size for size in tensor.shape]
        probe = np.broadcast_to(np.arange(channels), shape)
        try:
            selected = np.asarray(probe[key])
        except (IndexError, TypeError, ValueError):  # a tensor key, or one the probe cannot take
            return False
        return (selected.ndim == len(output.shape) and selected.shape[-1] == channels
                and bool(np.all(selected.reshape(-1, channels) == np.arange(channels))))


def _classes(module, names: str) -> tuple:
    return tuple(getattr(module, name) for name in names.split() if hasattr(module, name))


_UNARY = (
    _classes(numpy_ops, "Abs Absolute Negative Exp Exp2 Expm1 Log Log1p Log2 Log10 Sqrt Square "
                        "Sign Sin Cos Tan Tanh Sinh Cosh Arcsin Arccos Arctan Arcsinh Arccosh "
                        "Arctanh Ceil Floor Round Trunc Clip Reciprocal Cbrt NanToNum Copy Real "
                        "Fabs Sinc Deg2rad Rad2deg LogicalNot Isnan Isinf Isfinite")
    + _classes(nn_ops, "Relu Relu6 Sigmoid HardSigmoid Silu HardSilu Gelu Elu Selu Celu "
                       "LeakyRelu Softplus Softsign LogSigmoid HardTanh HardShrink SoftShrink "
                       "TanhShrink Squareplus SparsePlus SparseSigmoid Threshold")
    + _classes(math_ops, "Erf Erfc Erfinv Rsqrt")
    + _classes(core_ops, "Cast SaturateCast StopGradient")
)
_BINARY = _classes(numpy_ops, "Add Subtract Multiply Divide TrueDivide DivideNoNan Maximum "
                              "Minimum Power FloorDivide Mod Fmod Fmax Fmin Hypot Arctan2 "
                              "Logaddexp Logaddexp2 Heaviside Where Equal NotEqual Greater "
                              "GreaterEqual Less LessEqual LogicalAnd LogicalOr LogicalXor")
_REDUCTIONS = _classes(numpy_ops, "Mean Sum Max Min Amax Amin Prod Std Var Median Nanmean "
                                  "Nansum Nanmax Nanmin Any All Argmax Argmin")
_MIXING = (
    _classes(numpy_ops, "Matmul Einsum Dot Tensordot Take TakeAlongAxis Sort Argsort "
                        "Cumsum Cumprod Flip Roll ArraySplit Tile Repeat Stack Pad")
    + _classes(nn_ops, "Softmax LogSoftmax Normalize LayerNorm RMSNorm Glu Sparsemax "
                       "DotProductAttention")
    + _classes(math_ops, "Logsumexp TopK FFT FFT2 IFFT2 RFFT IRFFT STFT ISTFT")
    + _classes(nn_ops, "OneHot MultiHot")
)

#: Built-in keras.ops handlers: operation classes -> handler.
OPERATION_HANDLERS = {
    _UNARY + _BINARY: ElementwiseOp(),
    _REDUCTIONS: ReductionOp(),
    _classes(numpy_ops, "Concatenate"): ConcatenateOp(),
    _classes(numpy_ops, "Split"): SplitOp(),
    _classes(numpy_ops, "Reshape"): ReshapeHandler("newshape"),
    _classes(numpy_ops, "Transpose"): TransposeOp(),
    _classes(numpy_ops, "Moveaxis"): MoveaxisOp(),
    _classes(core_ops, "Unstack"): UnstackOp(),
    _classes(numpy_ops, "ZerosLike OnesLike FullLike"): ElementwiseOp(),
    _classes(numpy_ops, "ExpandDims Squeeze"): ShapeOp(),
    _classes(numpy_ops, "GetItem"): GetItemOp(),
    _MIXING: MixingOp(),
}
