"""Composite layers rebuilt in place: the layer's own class around its slimmed sublayers.

``slim`` inlines a composite layer (a custom layer whose ``call`` uses only
its sublayers and keras.ops) when its trace holds for every input size. A
composite whose ``call`` reads its inputs' batch size or sequence length
(keras-hub's decoder blocks build a causal mask from them) was traced with
placeholder sizes (``tfprune.graph.model_graph.traced_concretely``), so its
traced ops are only right at those sizes. Such a layer is rebuilt instead:
a new instance of its class from its config, whose sublayer attributes are
replaced by the slimmed sublayers, then called as the original was, so its
own ``call`` computes the shapes at run time. Its class is
``tfprune.keras_objects.slimmed_class(its class)``, so the slimmed model saves
and loads with the slimmed sublayers.
"""

from __future__ import annotations

import keras

from tfprune.keras_objects import replace_sublayers, slimmed_class
from tfprune.layer_configs import layer_config, rebuild
from tfprune.plans.pruning_plan import PlanError


def rebuild_composite(layer: keras.layers.Layer, replacements: dict[int, object],
                      copies: list, name: str | None = None):
    """A new ``slimmed_class(type(layer))`` whose sublayers are ``replacements[id(sublayer)]``.

    Sublayers without a replacement that hold replaced sublayers themselves
    are rebuilt the same way; the others are the new instance's own (fresh
    from the config, like the originals: the sublayers the plan leaves
    untouched), and ``(fresh, original)`` is appended to ``copies`` so their
    weights can be copied once they are built. The new instance is first
    built as the original was where its ``build`` can run again (it may set
    more than sublayers), then its sublayers are replaced; it counts as
    built, so Keras does not build it again over them.

    Args:
        layer: The composite layer of the original model.
        replacements: ``{id(original sublayer): slimmed sublayer}``.
        copies: Receives ``(fresh sublayer, original sublayer)`` pairs.
        name: The new instance's name (default: the original's; a composite
            sharing its name with another one is named by its path).
    """
    config = {**layer_config(layer), "name": name or layer.name}
    layer_type = slimmed_class(type(layer))
    clone = rebuild(layer, config, layer_type)
    try:
        _build_like(clone, layer)
    except (ValueError, TypeError, AttributeError):  # a build that cannot run again
        clone = rebuild(layer, config, layer_type)  # left unbuilt, marked built below
    replaced = {}
    for attribute, value in list(vars(layer).items()):
        if attribute == "_layers" or not isinstance(value, keras.layers.Layer):
            continue
        new = _replacement(value, replacements, copies)
        if new is None:
            copies.append((getattr(clone, attribute, None), value))
        else:
            replaced[attribute] = new
    replace_sublayers(clone, replaced)
    clone.slimmed_attributes = tuple(replaced)
    clone.built = True
    _check_all_placed(layer, clone, replacements)
    return clone


def _check_all_placed(layer, clone, replacements: dict[int, object]) -> None:
    """Raises PlanError if a slimmed sublayer of ``layer`` is not in ``clone``.

    A sublayer held where no attribute names it (in a list, a dict) could not
    be replaced: the clone would compute with a full-size sublayer.
    """
    present = {id(sub) for sub in clone._flatten_layers(include_self=False, recursive=True)}
    lost = [sub.name for sub in layer._flatten_layers(include_self=False, recursive=True)
            if id(sub) in replacements and id(replacements[id(sub)]) not in present]
    if lost:
        raise PlanError(
            f"slim: {layer.name!r} ({type(layer).__name__}) holds {lost} where tfprune cannot "
            "put their slimmed versions (not in an attribute of their own, nor in a "
            "keras.Sequential); pass their names in ignored_layers to keep them whole.")


def _build_like(clone, layer) -> None:
    """Builds the clone as the original was built.

    Its ``build`` may set more than sublayers (a scale factor); the full-size
    sublayers it makes are replaced afterwards.
    """
    if type(layer).build is keras.layers.Layer.build:  # nothing of its own to build
        return
    config = layer.get_build_config()
    if config:
        clone.build_from_config(config)


def copy_untouched_weights(copies: list) -> None:
    """Copies each original sublayer's weights into its fresh twin (built by the call)."""
    for fresh, original in copies:
        if fresh is not None and fresh.built and original.weights:
            fresh.set_weights(original.get_weights())


def _replacement(value, replacements: dict[int, object], copies: list):
    if id(value) in replacements:
        return replacements[id(value)]
    inner = value._flatten_layers(include_self=False, recursive=True)
    if not any(id(sub) in replacements for sub in inner):
        return None
    if isinstance(value, keras.Sequential):  # (ViTDet's MLP holds its Dense layers so)
        return _rebuilt_sequential(value, replacements, copies)
    return rebuild_composite(value, replacements, copies)


def _rebuilt_sequential(model: keras.Sequential, replacements: dict[int, object],
                        copies: list) -> keras.Sequential:
    """A Sequential of the slimmed layers, and fresh twins of the untouched ones."""
    layers = []
    for sub in model.layers:
        new = _replacement(sub, replacements, copies)
        if new is None:
            new = rebuild(sub, layer_config(sub))
            copies.append((new, sub))
        layers.append(new)
    return keras.Sequential(layers, name=model.name)
