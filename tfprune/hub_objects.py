"""tfprune's Keras-serializable layers built on keras-hub's, for slimmed keras-hub models.

``HeadSizedLlamaAttention``, ``HeadSizedMixtralAttention``,
``HeadSizedQwenAttention``, ``HeadSizedQwenMoeAttention`` and
``HeadSizedPhi3Attention``: those models' attention layers with their head
size as a config entry (the originals derive it from their input width and
head count). ``slim`` builds them where such an attention layer loses query
groups, query heads or hidden channels. This module imports keras-hub, so ``import tfprune``
does not import it: ``tfprune.hub_objects`` is imported when ``slim`` needs it,
and by ``tfprune.model_files.load_model_file`` for a file that names it. To
load such a model with plain ``keras.saving.load_model``, ``import
tfprune.hub_objects`` first.
"""

from __future__ import annotations

import keras
from keras_hub.src.models.llama.llama_attention import LlamaAttention
from keras_hub.src.models.mixtral.mixtral_attention import CachedMixtralAttention
from keras_hub.src.models.phi3.phi3_attention import Phi3Attention
from keras_hub.src.models.qwen.qwen_attention import QwenAttention
from keras_hub.src.models.qwen_moe.qwen_moe_attention import QwenMoeAttention

from tfprune.layer_configs import constructor_config


class _WidthOfPinnedHeads(int):
    """An input width whose floor division by the head count gives a pinned head size.

    ``LlamaAttention.build`` computes ``head_dim = hidden_dim // num_query_heads``
    and uses ``hidden_dim`` for nothing else but the projections' hidden axis.
    Built from this width, the layer gets the head size it was given while its
    hidden axis stays the input's width.
    """

    def __new__(cls, width: int, heads: int, head_dim: int):
        value = super().__new__(cls, width)
        value.heads, value.head_dim = heads, head_dim
        return value

    def __floordiv__(self, other):
        if other == self.heads:
            return self.head_dim
        return int(self) // other


class _PinnedHeadSize:
    """Builds a keras-hub attention layer with ``head_dim``, not ``input width // heads``.

    For the attention layers whose ``build`` derives their head size as
    ``inputs_shape[-1] // self.num_query_heads`` (Llama's, Mixtral's).

    Args:
        head_dim: The size of each query and key/value head.
        **kwargs: The attention layer's arguments.
    """

    def __init__(self, head_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.head_dim = int(head_dim)

    def build(self, inputs_shape):
        """The layer's own build, its head size ``head_dim`` at any input width."""
        width = _WidthOfPinnedHeads(inputs_shape[-1], self.num_query_heads, self.head_dim)
        super().build((*inputs_shape[:-1], width))

    def get_config(self) -> dict:
        """The layer's config and ``head_dim``."""
        return {**super().get_config(), "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="tfprune")
class HeadSizedLlamaAttention(_PinnedHeadSize, LlamaAttention):
    """keras-hub's ``LlamaAttention`` with a head size of its own, not ``hidden // heads``.

    A Llama block whose attention keeps fewer heads, or reads a narrower hidden
    width, keeps the head size it was trained with (its rotary embedding and its
    projections' head axis depend on it). ``LlamaAttention`` would compute
    another from its input width and head count; this layer builds with
    ``head_dim``. Everything else is ``LlamaAttention``'s: the call, the cache,
    the rotary embedding.

    Args:
        head_dim: The size of each query and key/value head.
        **kwargs: ``LlamaAttention``'s arguments.
    """

    def get_config(self) -> dict:
        """The constructor's arguments and ``head_dim``.

        (keras-hub 0.32's ``LlamaAttention.get_config`` reads an attribute it
        never sets, so the arguments are read back from the attributes.)
        """
        config = {**constructor_config(self, LlamaAttention),
                  **keras.layers.Layer.get_config(self)}
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return {**config, "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="tfprune")
class HeadSizedMixtralAttention(_PinnedHeadSize, CachedMixtralAttention):
    """keras-hub's ``CachedMixtralAttention`` with ``head_dim`` as an argument (as for Llama)."""


@keras.saving.register_keras_serializable(package="tfprune")
class HeadSizedQwenAttention(_PinnedHeadSize, QwenAttention):
    """keras-hub's ``QwenAttention`` (Qwen 2) with ``head_dim`` as an argument (as for Llama)."""


@keras.saving.register_keras_serializable(package="tfprune")
class HeadSizedQwenMoeAttention(_PinnedHeadSize, QwenMoeAttention):
    """keras-hub's ``QwenMoeAttention`` with ``head_dim`` as an argument (as for Llama)."""


@keras.saving.register_keras_serializable(package="tfprune")
class HeadSizedPhi3Attention(_PinnedHeadSize, Phi3Attention):
    """keras-hub's ``Phi3Attention`` with ``head_dim`` as an argument (as for Llama)."""
