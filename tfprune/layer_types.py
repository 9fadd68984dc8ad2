"""Per-layer-type registries: the entry for a layer's type, inherited along its MRO."""

from __future__ import annotations


def lookup(registry: dict, layer, default=None):
    """The registry's entry for ``type(layer)`` or its nearest base class, else ``default``.

    Args:
        registry: ``{layer type: entry}`` (channel rules, slim handlers, ...).
        layer: A Keras layer.
        default: Returned when no class in the type's MRO is registered.
    """
    for cls in type(layer).__mro__:
        if cls in registry:
            return registry[cls]
    return default
