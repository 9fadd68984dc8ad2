"""Handlers of keras-hub's own layers (embeddings, ViT's patching, its normalizations).

keras-hub is optional (``pip install tfprune[hub]``). Nothing here imports it
at tfprune's import: the first time ``handler_for`` meets a layer whose class
lives in keras-hub, it calls ``register_handlers``, which registers the
handlers below for the classes this keras-hub version has. keras-hub's
transformer blocks (``TransformerEncoder``, ``ViTEncoderBlock``...) need no
handler: they are composite layers, traced into their sublayers
(``tfprune.graph.model_graph.composite_graph``); ``CachedMultiHeadAttention``
is a ``keras.layers.MultiHeadAttention`` and loses whole heads like it.
"""

from __future__ import annotations

import importlib
import sys

import keras
import numpy as np

from tfprune.handlers.attention import GroupedQueryAttention
from tfprune.handlers.base import (
    FALLBACK_HANDLERS,
    HANDLERS,
    LayerHandler,
    attribute,
    axis_mask,
    block,
    follow,
    source,
    take,
)
from tfprune.handlers.normalization import RootMeanSquare
from tfprune.handlers.structure import KeepWhole


class ChannelWeights(LayerHandler):
    """A layer whose listed weights each have one axis indexing its output channels.

    Subclasses list those weights in ``channel_weights`` as ``(dotted path,
    axis)``; the first is the scored kernel when ``creates_channels`` (the
    layer makes its output channels, like an embedding table), else the layer
    follows its input's channels (a position embedding added to them).

    Attributes:
        channel_weights: ``((path, axis), ...)`` of the weights following the channels.
        creates_channels: Whether the output channels are the layer's own.
        size_key: The config key holding the channel count (None: the layer
            reads it from its input when built).
    """

    channel_weights: tuple = ()
    creates_channels = True
    size_key: str | None = None

    @property
    def scored_kernel(self):
        """The first listed weight, scored when the layer creates its channels."""
        return self.channel_weights[0][0] if self.creates_channels else None

    @property
    def filter_axis(self):
        """The axis of the scored weight indexing the channels."""
        return self.channel_weights[0][1]

    @property
    def kernel_attributes(self):
        """No multiply-accumulates: embeddings are looked up, added or broadcast."""
        return ()

    def analyse(self, analysis, layer, inputs, outputs):
        """A new space (``creates_channels``), or the input's followed."""
        if self.creates_channels:
            source(analysis, layer, inputs[:0], outputs)  # its inputs are ids or pixels
            for tensor in inputs:
                analysis.block(analysis.layout(tensor), f"{layer.name!r}: its input is "
                               "token ids or pixels")
        else:
            follow(analysis, layer, inputs, outputs)

    def _mask(self, in_mask, out_mask):
        return out_mask if self.creates_channels else in_mask

    def _present(self, layer) -> list:
        """``[(variable, axis)]`` of the listed weights this layer has."""
        found = []
        for path, axis in self.channel_weights:
            try:
                variable = attribute(layer, path)
            except AttributeError:
                continue
            if variable is not None:
                found.append((variable, axis))
        return found

    def variable_masks(self, layer, in_mask, out_mask):
        """Every listed weight masked on its channel axis."""
        mask = self._mask(in_mask, out_mask)
        if mask is None:
            return []
        return [(variable, axis_mask(variable.shape, mask, axis))
                for variable, axis in self._present(layer)]

    def slim(self, layer, context):
        """Every listed weight sliced on its channel axis; ``size_key`` set to the kept count."""
        config = layer.get_config()
        index = (context.output_index(layer) if self.creates_channels
                 else context.input_index(layer))
        axes = {id(variable): axis for variable, axis in self._present(layer)}
        if index is not None and self.size_key:
            config[self.size_key] = int(index.size)
        weights = [take(np.asarray(v), index, axes[id(v)]) if id(v) in axes else np.asarray(v)
                   for v in layer.weights]
        return config, weights


class PositionEmbeddingHandler(ChannelWeights):
    """``keras_hub.layers.PositionEmbedding``: a table added to its input's channels."""

    channel_weights = (("position_embeddings", -1),)
    creates_channels = False


class TokenAndPositionEmbeddingHandler(ChannelWeights):
    """``keras_hub.layers.TokenAndPositionEmbedding``: token and position tables."""

    channel_weights = (("token_embedding.embeddings", -1),
                       ("token_embedding.reverse_embeddings", 0),
                       ("position_embedding.position_embeddings", -1))
    size_key = "embedding_dim"


class PatchingAndEmbeddingHandler(ChannelWeights):
    """ViT's ``ViTPatchingAndEmbedding``: patch conv, class token and position table."""

    channel_weights = (("patch_embedding.kernel", -1), ("patch_embedding.bias", 0),
                       ("class_token", -1), ("position_embedding.embeddings", -1))
    size_key = "hidden_dim"

    @property
    def kernel_attributes(self):
        """The patch convolution's kernel."""
        return ("patch_embedding.kernel",)

    def analyse(self, analysis, layer, inputs, outputs):
        """Channels first (NCHW) patches are laid out on another axis: kept whole."""
        if getattr(layer, "data_format", None) == "channels_first":
            block(analysis, layer, inputs, outputs, "data_format='channels_first'")
            return
        super().analyse(analysis, layer, inputs, outputs)

    def slim(self, layer, context):
        """As ``ChannelWeights``, without the derived keys its own ``from_config`` refuses."""
        config, weights = super().slim(layer, context)
        for derived in ("num_patches", "num_positions"):  # keras-hub 0.32 writes, never reads
            config.pop(derived, None)
        return config, weights

    def flops(self, call, kept):
        """The patch convolution at each patch (2 FLOPs per kept kernel entry)."""
        patches = int(call.operation.num_patches)
        return 2 * patches * kept(call.operation.patch_embedding.kernel)


class HubDecoderAttention(GroupedQueryAttention):
    """keras-hub's decoder attention (Gemma's ``CachedGemmaAttention``...): query groups.

    Its key and value read the query's input; its other inputs are the
    attention mask and the cache.
    """

    projections = ("query_dense", "key_dense", "value_dense", "output_dense")
    reads_query_only = True


class DerivedHeadSizeAttention(GroupedQueryAttention):
    """Attention that computes its head size as its input width over its head count.

    Llama's, Mixtral's, Qwen 2's and Phi-3's attention layers derive
    ``head_dim = hidden_dim // num_query_heads`` when built, so a layer rebuilt
    with fewer heads, or a narrower input, would have another. ``slim``
    rebuilds one as its ``tfprune.hub_objects`` twin (``head_sized``: the
    same layer with ``head_dim`` pinned) instead.

    Args:
        head_sized: The name of the twin class in ``tfprune.hub_objects``.
        projections: The attributes holding the query, key, value and output
            projections, where they are not ``_query_dense``... (Mixtral's and
            Phi-3's are ``query_dense``...; QwenMoe's, ``query_dense``...
            ``_output_dense``).
    """

    reads_query_only = True

    def __init__(self, head_sized: str, projections: tuple[str, ...] | None = None):
        self.head_sized = head_sized
        if projections is not None:
            self.projections = projections

    def slim(self, layer, context):
        """``GroupedQueryAttention``'s config and slices, with the head size pinned."""
        config, weights = super().slim(layer, context)
        return _head_size_pinned(self, layer, config), weights

    def rebuilt_class(self, layer, context):
        """The ``head_sized`` twin: the head size stays whatever the heads and width."""
        return getattr(importlib.import_module("tfprune.hub_objects"), self.head_sized)


class HeadDimAttention(GroupedQueryAttention):
    """Attention whose head size is a config entry (Qwen 3's, filled in when built).

    Its key and value read the query's input; fewer heads or a narrower input
    leave the head size as it is.
    """

    reads_query_only = True


class SinkAttention(GroupedQueryAttention):
    """GPT-OSS's attention: query groups, each query head with a learned sink logit.

    A removed query head's sink (``sinks``, one per query head) goes with it.
    The head size is a config entry (``head_dim``), pinned in the rebuilt layer
    where the original left it to be derived from its input width.
    """

    projections = HubDecoderAttention.projections
    reads_query_only = True

    def inner_masks(self, layer, masks):
        """The grouped-query slices, and the removed query heads' sinks."""
        pairs = super().inner_masks(layer, masks)
        groups, heads = masks.get("query_groups"), masks.get("query_heads")
        if groups is None and heads is None:
            return pairs
        per_head = heads if groups is None else np.repeat(np.asarray(groups, bool),
                                                          self._group_size(layer))
        return [*pairs, (layer.sinks, np.asarray(per_head, np.float32))]

    def slim(self, layer, context):
        """The grouped-query config and slices, the kept heads' sinks, the head size pinned."""
        config, weights = super().slim(layer, context)
        heads, _ = self.kept_heads(layer, context)
        if heads is not None:
            where = [id(v) for v in layer.weights].index(id(layer.sinks))
            weights[where] = np.asarray(layer.sinks)[heads]
        return _head_size_pinned(self, layer, config), weights


def _head_size_pinned(handler: GroupedQueryAttention, layer, config: dict) -> dict:
    """``config`` with ``head_dim``, the head size the layer's query kernel has."""
    return {**config, "head_dim": int(handler._dense(layer)[0].kernel.shape[-1])}


class MistralStyleAttention(HubDecoderAttention):
    """Mistral's attention: query groups and the hidden width.

    Its head size is a config entry (``head_dim``, filled in when the layer is
    built), so a rebuilt layer with fewer heads or a narrower input keeps it.
    Its head counts are private attributes.
    """

    projections = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
    head_attributes = ("_num_query_heads", "_num_key_value_heads")


#: ``(module, class name) -> handler`` for keras-hub's layers; classes this keras-hub
#: version lacks are skipped.
HUB_HANDLERS = {
    ("keras_hub.src.layers.modeling.position_embedding", "PositionEmbedding"):
        PositionEmbeddingHandler(),
    ("keras_hub.src.layers.modeling.token_and_position_embedding",
     "TokenAndPositionEmbedding"): TokenAndPositionEmbeddingHandler(),
    ("keras_hub.src.models.vit.vit_layers", "ViTPatchingAndEmbedding"):
        PatchingAndEmbeddingHandler(),
    ("keras_hub.src.models.gemma.gemma_attention", "CachedGemmaAttention"):
        HubDecoderAttention(),
    ("keras_hub.src.models.llama.llama_attention", "LlamaAttention"):
        DerivedHeadSizeAttention("HeadSizedLlamaAttention"),
    ("keras_hub.src.models.mixtral.mixtral_attention", "CachedMixtralAttention"):
        DerivedHeadSizeAttention("HeadSizedMixtralAttention", HubDecoderAttention.projections),
    ("keras_hub.src.models.qwen.qwen_attention", "QwenAttention"):
        DerivedHeadSizeAttention("HeadSizedQwenAttention"),
    ("keras_hub.src.models.qwen_moe.qwen_moe_attention", "QwenMoeAttention"):
        DerivedHeadSizeAttention("HeadSizedQwenMoeAttention",
                                 ("query_dense", "key_dense", "value_dense", "_output_dense")),
    ("keras_hub.src.models.phi3.phi3_attention", "Phi3Attention"):
        DerivedHeadSizeAttention("HeadSizedPhi3Attention", HubDecoderAttention.projections),
    ("keras_hub.src.models.qwen3.qwen3_attention", "Qwen3Attention"): HeadDimAttention(),
    ("keras_hub.src.models.gpt_oss.gpt_oss_attention", "GptOssAttention"): SinkAttention(),
    ("keras_hub.src.models.qwen3_moe.qwen3_moe_attention", "Qwen3MoeAttention"):
        HeadDimAttention(),
    ("keras_hub.src.models.mistral.mistral_attention", "CachedMistralAttention"):
        MistralStyleAttention(),
    ("keras_hub.src.layers.modeling.rms_normalization", "RMSNormalization"): RootMeanSquare(),
    ("keras_hub.src.models.gemma.rms_normalization", "RMSNormalization"): RootMeanSquare(),
    ("keras_hub.src.models.llama.llama_layernorm", "LlamaLayerNorm"): RootMeanSquare(),
}

#: Class-name endings of keras-hub's per-family normalizations (``MistralLayerNormalization``,
#: ``GptOssLayerNormalization``, ``Qwen3LayerNorm``...): they normalize across the channels;
#: the RMS ones among them (found by calling them: ``rms_form``) let the channels follow.
NORMALIZATION_SUFFIXES = ("LayerNorm", "LayerNormalization", "RMSNorm", "RMSNormalization")


def register_handlers() -> None:
    """Registers the handlers of keras-hub's layers (``handler_for`` calls it once).

    The listed classes get their handlers; every other keras-hub layer class
    named like a normalization (``NORMALIZATION_SUFFIXES``) normalizes across
    the channels. keras-hub layers nothing handles are kept whole
    (``kept_whole``) rather than refused. Handlers registered by the user for
    the same classes are kept.
    """
    for (module_name, class_name), handler in HUB_HANDLERS.items():
        try:
            layer_type = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        HANDLERS.setdefault(layer_type, handler)
    for layer_type in _hub_layer_classes():
        if layer_type.__name__.endswith(NORMALIZATION_SUFFIXES):
            HANDLERS.setdefault(layer_type, RootMeanSquare())
    FALLBACK_HANDLERS["keras_hub."] = kept_whole


def _hub_layer_classes() -> list[type]:
    """The layer classes of the keras-hub modules imported so far (all, once it is imported)."""
    found = []
    for name, module in list(sys.modules.items()):
        if name.startswith("keras_hub.src.") and module is not None:
            found += [value for value in vars(module).values() if isinstance(value, type)
                      and issubclass(value, keras.layers.Layer)
                      and value.__module__ == name]
    return found


def kept_whole(layer, why: str) -> LayerHandler:
    """The handler of a keras-hub layer tfprune cannot see into: kept whole, with why.

    keras-hub's layers cannot be renamed or changed by their users, so such a
    layer keeps its channels (and those of its neighbours it touches) instead
    of stopping the analysis; ``ChannelGraph.kept_whole`` lists it.

    Args:
        layer: The layer.
        why: Why it could not be analysed (no handler, or its trace failed).
    """
    why = why.removesuffix("; register a handler for it")
    return KeepWhole(f"a keras-hub {type(layer).__name__} tfprune cannot see into ({why})")

