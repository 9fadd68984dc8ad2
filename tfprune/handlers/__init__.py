"""One handler per layer (or keras.ops operation) type: all that tfprune knows of each type.

``handler_for(layer)`` finds a layer's ``LayerHandler`` along its type's MRO;
``register_layer_handler(LayerType, handler)`` adds your own. Families of
built-in handlers live in one module each: ``kernels`` (Conv, Dense,
transposed, separable and depthwise convs, Embedding), ``normalization``,
``structure`` (pass-through, merges, concatenation, reshapes),
``attention`` (MultiHeadAttention's heads), ``operations`` (keras.ops nodes),
``wrappers`` (``TimeDistributed``, handled as the layer it wraps) and
``applications`` (keras.applications' own layers).
"""

from tfprune.handlers.applications import APPLICATION_HANDLERS
from tfprune.handlers.attention import ATTENTION_HANDLERS
from tfprune.handlers.base import (
    HANDLERS,
    LayerHandler,
    attribute,
    axis_mask,
    bias_masks,
    block,
    follow,
    handler_for,
    merge,
    pass_through,
    register_layer_handler,
    source,
    take,
)
from tfprune.handlers.channel_analysis import ChannelAnalysis, GraphError, Layout
from tfprune.handlers.kernels import KERNEL_HANDLERS, ConvTranspose, Depthwise, Separable, Source
from tfprune.handlers.normalization import NORMALIZATION_HANDLERS, AcrossChannels, BatchNorm
from tfprune.handlers.operations import OPERATION_HANDLERS
from tfprune.handlers.structure import STRUCTURE_HANDLERS, Ignored, KeepWhole, Merge, PassThrough
from tfprune.handlers.wrappers import WRAPPER_HANDLERS, Distributed

for _table in (STRUCTURE_HANDLERS, NORMALIZATION_HANDLERS, KERNEL_HANDLERS, ATTENTION_HANDLERS,
               OPERATION_HANDLERS, WRAPPER_HANDLERS, APPLICATION_HANDLERS):
    for _types, _handler in _table.items():
        HANDLERS.update(dict.fromkeys(_types, _handler))

__all__ = [
    "HANDLERS", "AcrossChannels", "BatchNorm", "ChannelAnalysis", "ConvTranspose", "Depthwise",
    "Distributed",
    "GraphError", "Ignored", "LayerHandler", "Layout", "Merge", "KeepWhole", "PassThrough",
    "Separable", "Source", "attribute", "axis_mask", "bias_masks", "block", "follow",
    "handler_for", "merge", "pass_through", "register_layer_handler", "source", "take",
]
