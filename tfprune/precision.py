"""Models trained with mixed precision, computed in float32 where precision matters.

Under a ``mixed_float16`` or ``mixed_bfloat16`` policy a layer keeps float32
variables but computes in half precision. Importance scores then lose most of
their digits: GraSP's Hg at T=200 is of order 1e-9, below float16's smallest
number, so every score came out 0; LiteRT's builtin kernels have no bfloat16
convolution, so the exported file would not run. Scoring and export therefore
use ``float32_model``: the same architecture and weights computing in float32
(nothing is lost: the variables already are float32).
"""

from __future__ import annotations

import keras

from tfprune.layer_state import copy_layer_state

#: Compute dtypes scoring and export replace by float32.
LOW_PRECISION = ("float16", "bfloat16")


def low_precision_layers(model: keras.Model) -> list[str]:
    """Names of the model's layers (nested ones included) that compute in half precision."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return [layer.name for layer in layers
            if getattr(layer, "compute_dtype", "float32") in LOW_PRECISION]


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` itself if it computes in float32, else a float32 copy with its weights.

    The copy is rebuilt from ``model.get_config()`` with every float16 /
    bfloat16 dtype policy set to float32, so its layers, inputs and outputs
    keep their names; its weights are copied now (take a new copy after
    training).

    Raises:
        ValueError: If the model cannot be rebuilt from its config (a custom
            layer without ``get_config``), naming the half-precision layers.
    """
    low = low_precision_layers(model)
    if not low:
        return model
    try:
        copy = type(model).from_config(_float32_config(model.get_config()))
        copy.set_weights(model.get_weights())
        layers = model._flatten_layers(include_self=False, recursive=True)
        copies = copy._flatten_layers(include_self=False, recursive=True)
        for original, rebuilt in zip(layers, copies, strict=True):
            copy_layer_state(original, rebuilt)
    except Exception as error:  # any rebuilding failure: say what and how to avoid it
        raise ValueError(
            f"model {model.name!r} computes in half precision ({', '.join(low[:5])}"
            f"{', ...' if len(low) > 5 else ''}), and tfprune scores and exports it in "
            f"float32, but it cannot be rebuilt from its config ({type(error).__name__}: "
            f"{error}). Build it under keras.mixed_precision.set_global_policy('float32') "
            "and copy the weights over.") from error
    return copy


def _float32_config(config):
    """``config`` with every half-precision dtype policy replaced by ``"float32"``."""
    if isinstance(config, dict):
        return {key: "float32" if key == "dtype" and _low_precision_policy(value)
                else _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    return config


def _low_precision_policy(value) -> bool:
    """Whether a serialized dtype (a name or a ``DTypePolicy`` config) is half precision."""
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        value = value.get("config", {}).get("name")
    if not isinstance(value, str):
        return False
    return keras.DTypePolicy(value).compute_dtype in LOW_PRECISION
