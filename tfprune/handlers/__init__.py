"""One handler per layer (or keras.ops operation) type: all that tfprune knows of each type.

``handler_for(layer)`` finds a layer's ``LayerHandler`` along its type's MRO;
``register_layer_handler(LayerType, handler)`` adds your own. Families of
built-in handlers live in one module each: ``kernels`` (Conv, Dense,
transposed, separable and depthwise convs, Embedding), ``normalization``,
``structure`` (pass-through, merges, concatenation, reshapes) and
``operations`` (keras.ops nodes).
"""

from tfprune.handlers.analysis import ChannelAnalysis, GraphError, Layout
from tfprune.handlers.base import (
    HANDLERS,
    LayerHandler,
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
from tfprune.handlers.kernels import KERNEL_HANDLERS, ConvTranspose, Depthwise, Separable, Source
from tfprune.handlers.normalization import NORMALIZATION_HANDLERS, AcrossChannels, BatchNorm
from tfprune.handlers.operations import OPERATION_HANDLERS
from tfprune.handlers.structure import STRUCTURE_HANDLERS, Ignored, Merge, Opaque, PassThrough

for _table in (STRUCTURE_HANDLERS, NORMALIZATION_HANDLERS, KERNEL_HANDLERS, OPERATION_HANDLERS):
    for _types, _handler in _table.items():
        HANDLERS.update(dict.fromkeys(_types, _handler))

__all__ = [
    "HANDLERS", "AcrossChannels", "BatchNorm", "ChannelAnalysis", "ConvTranspose", "Depthwise",
    "GraphError", "Ignored", "LayerHandler", "Layout", "Merge", "Opaque", "PassThrough",
    "Separable", "Source", "axis_mask", "bias_masks", "block", "follow", "handler_for", "merge",
    "pass_through", "register_layer_handler", "source", "take",
]
