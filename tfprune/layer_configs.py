"""A layer's config, whatever its ``get_config`` does, and a layer rebuilt from one.

``slim`` rebuilds layers from their configs, and a saved slimmed composite
(``tfprune.keras_objects.SlimmedComposite``) is rebuilt from one when it
loads. Some keras-hub layers have no ``get_config``, a broken one, or one that
writes keys their own constructor refuses: these functions make up for it.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap

import keras


def layer_config(layer) -> dict:
    """``layer.get_config()``, or, for a layer without one, its constructor's arguments.

    Some keras-hub sublayers are built by their block, which serializes the
    block's config, never theirs: ``CachedGemmaAttention`` has no
    ``get_config``, and ``LlamaAttention``'s reads an attribute it never set
    (keras-hub 0.32). Their arguments are read back from the attributes of
    the same names (or with a leading underscore), with the layer's name and
    dtype policy.
    """
    try:
        config = layer.get_config()
    except (NotImplementedError, AttributeError):
        return constructor_config(layer)
    return completed_config(layer, {key: _rate_of(value) for key, value in config.items()})


@functools.cache
def _stored_as(layer_type: type) -> dict[str, str]:
    """``{argument: attribute}`` for each ``self.attribute = argument`` of the constructor.

    Read from the constructor's source (``int(argument)`` and the like count
    too); empty when the source cannot be read.
    """
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(layer_type.__init__)))
    except (OSError, TypeError, SyntaxError):
        return {}
    stored = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in ("int", "float", "bool", "str") and len(value.args) == 1):
            value = value.args[0]
        if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                and target.value.id == "self" and isinstance(value, ast.Name)):
            stored.setdefault(value.id, target.attr)
    return stored


def _rate_of(value):
    """A dropout layer where its rate belongs (keras-hub 0.32's Swin config): the rate."""
    rate = getattr(value, "rate", None) if isinstance(value, keras.layers.Layer) else None
    return rate if isinstance(rate, int | float) else value


def missing_arguments(layer_type: type, config: dict) -> list[str]:
    """The required constructor arguments of ``layer_type`` that ``config`` lacks."""
    return [name for name, parameter in inspect.signature(layer_type.__init__).parameters.items()
            if name != "self" and parameter.default is parameter.empty
            and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
            and name not in config]


def completed_config(layer, config: dict) -> dict:
    """``config`` with the required constructor arguments it lacks, read from the attributes.

    Some keras-hub layers' ``get_config`` is Keras' default, which leaves out
    their own arguments (keras-hub 0.32's ``MixtralSparseMoeBlock``): a
    layer rebuilt from it would not construct.
    """
    missing = missing_arguments(type(layer), config)
    if not missing:
        return config
    read = constructor_config(layer)
    return {**config, **{name: read[name] for name in missing if name in read}}


def constructor_config(layer, layer_type: type | None = None) -> dict:
    """A config from the layer's constructor arguments, read back from its attributes.

    Each argument of ``(layer_type or type(layer)).__init__`` is read from the attribute of
    the same name (or with a leading underscore), with the layer's name and
    dtype policy (serialized, so the config saves), or from the attribute the
    constructor assigns it to (``self.intermediate_dim = moe_intermediate_dim``
    in keras-hub's ``QwenSparseMoeBlock``). A dropout rate is read from the
    Dropout layer built from it (``dropout`` from ``dropout_layer``:
    keras-hub's T5 attention). For layers whose ``get_config`` is missing,
    broken, or writes keys its own ``from_config`` refuses (keras-hub 0.32's
    ``Qwen3TransformerDecoder``).
    """
    config = {"name": layer.name, "trainable": layer.trainable,  # the policy serialized:
              "dtype": keras.dtype_policies.serialize(layer.dtype_policy)}  # a saveable config
    parameters = inspect.signature((layer_type or type(layer)).__init__).parameters
    for name, parameter in parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        stored = _stored_as(layer_type or type(layer)).get(name)
        for attribute in (name, f"_{name}", *filter(None, [stored]), f"{name}_layer"):
            if not hasattr(layer, attribute):
                continue
            value = _rate_of(getattr(layer, attribute))
            if not isinstance(value, keras.layers.Layer):  # a sublayer is not its argument
                config[name] = value
                break
    return config


def rebuild(layer, config: dict, layer_type: type | None = None):
    """A new layer of ``layer``'s class (or ``layer_type``) from ``config``.

    If the class refuses keys of its own config, it is built from the keys
    its constructor takes, the missing ones read back as ``constructor_config``.
    """
    layer_type = layer_type or type(layer)
    config = _live_functions(layer, config)
    try:
        return layer_type.from_config(config)
    except TypeError:  # keras-hub 0.32's WindowAttention writes keys its __init__ refuses
        return layer_type.from_config({**constructor_config(layer),
                                       **taken_keys(layer_type, config)})


def _live_functions(layer, config: dict) -> dict:
    """``config`` with each serialized plain function Keras cannot find replaced by the layer's.

    An activation that is an unregistered Python function (keras-hub's CLIP
    ``quick_gelu``, a user's own) serializes by name only, and Keras cannot
    deserialize it again: the rebuilt layer takes the original's function.
    """
    live = {}
    for key, value in config.items():
        if not (isinstance(value, dict) and value.get("class_name") == "function"):
            continue
        try:
            keras.saving.deserialize_keras_object(value)
        except (TypeError, ValueError):
            if callable(getattr(layer, key, None)):
                live[key] = getattr(layer, key)
    return {**config, **live} if live else config


def taken_keys(layer_type: type, config: dict) -> dict:
    """The entries of ``config`` that ``layer_type``'s constructor takes (and name, dtype)."""
    parameters = inspect.signature(layer_type.__init__).parameters
    return {key: value for key, value in config.items()
            if key in parameters or key in ("name", "dtype", "trainable")}
