"""A uniform plan slims a keras-hub backbone (or its causal LM) into its own class.

A plan that keeps the same count in every block on each axis (``make_plan(...,
uniform=True)``) gives every block's weights the same smaller shapes, which a
smaller config of the model's own class builds: ``GemmaBackbone`` with fewer
``num_query_heads`` / ``num_key_value_heads`` or a smaller
``intermediate_dim``. The config is found from the shapes, not from a table
per family: every size entry of the config (``SIZE_KEYS``) that one of the shortened axes
measures (the axis is as long as the entry, or twice or half as long) gets the
value scaled as that axis was, is kept if a model built with that one
change differs only where, and as, the plan shortens it; the model built with
all kept changes must have exactly the kept shapes; the kept weights are copied
into it, variable by variable, in the order both models create them. A task
model whose weights are all its backbone's (a ``CausalLM`` with its tied
output embedding) is rebuilt as its own class around the slimmed backbone,
with the same preprocessor, so ``generate()`` works as before.

When no config fits (the plan is not uniform, or the class derives a size
from another, as Llama's ``head_dim = hidden_dim // num_query_heads``), the
reason is returned and ``slim`` builds the flat functional model instead.
"""

from __future__ import annotations

import keras
import numpy as np

#: The config entries that size a model's blocks, tried in this order. A class whose
#: config names its sizes otherwise can be served by adding its keys here.
SIZE_KEYS = ["num_query_heads", "num_key_value_heads", "num_heads", "intermediate_dim",
             "mlp_dim", "hidden_dim", "num_layers"]


def is_hub_model(model) -> bool:
    """Whether ``model`` is a keras-hub backbone or a task holding one."""
    return type(model).__module__.startswith("keras_hub.")


def weights_are_the_backbones(task) -> bool:
    """Whether every weight of a keras-hub task is its backbone's (a causal LM's are)."""
    return {id(v) for v in task.weights} == {id(v) for v in task.backbone.weights}


def around(task, backbone):
    """``task``'s own class rebuilt around another ``backbone``, with the same preprocessor."""
    return type(task)(backbone=backbone, preprocessor=getattr(task, "preprocessor", None))


def same_class_slim(model: keras.Model, masks: dict, rescaled: dict | None = None,
                    task: keras.Model | None = None) -> tuple[keras.Model | None, str]:
    """``model``'s own class, built smaller, holding the kept weights; or ``(None, why)``.

    The rebuilt model is checked against the masked one on a probe input
    (``_gap_to_masked``): a class that derives a constant from a size
    (``SIZE_CONSTANTS``) the rebuilt weights do not make up for is refused
    with why, rather than returned wrong.

    Args:
        model: A keras-hub backbone, or a task model whose weights are all its backbone's.
        masks: ``{id(variable): keep mask}`` of the plan (``tfprune.pruning.variable_masks``).
        rescaled: ``{id(variable): full-shape array}`` to slice instead of the
            variable's value (``LayerHandler.rescaled_weights``: RMS norm scales).
        task: The task ``model`` is the backbone of, if any: its outputs are
            the ones checked.
    """
    rescaled = rescaled or {}
    backbone = getattr(model, "backbone", None)
    if backbone is not None and backbone is not model:
        if not weights_are_the_backbones(model):
            return None, (f"{type(model).__name__} has weights outside its backbone; only a "
                          "task whose weights are all its backbone's is rebuilt as its class")
        slimmed, why = same_class_slim(backbone, masks, rescaled, task=model)
        if slimmed is None:
            return None, why
        rebuilt = around(model, slimmed)
        return _checked(model, rebuilt, masks, "")
    kept = []
    for variable in model.weights:
        index = _kept_indices(variable, masks.get(id(variable)))
        if index is None:
            return None, (f"the plan's mask of {variable.path} is not a whole slice along each "
                          "axis")
        kept.append(index)
    shapes = [tuple(len(i) for i in index) for index in kept]
    config = {**model.get_config(), **_pinned_head_size(model)}
    changes = _config_changes(model, config, shapes)
    if not changes:
        return None, (f"no config of {type(model).__name__} gives the kept shapes: no entry of "
                      f"its config ({', '.join(SIZE_KEYS)}) changes only the shapes the plan "
                      "shortens (a plan made with uniform=True keeps the same count in every "
                      "block)")
    rebuilt = type(model).from_config({**config, **changes})
    mismatch = _mismatch(rebuilt.weights, shapes)
    if mismatch is not None:
        path, built, wanted = mismatch
        said = ", ".join(f"{key}={value}" for key, value in changes.items())
        return None, (f"no config of {type(model).__name__} gives the kept shapes: with {said} "
                      f"{path} is {built}, the plan keeps {wanted} (a plan made with "
                      "uniform=True keeps the same count in every block)")
    for target, source, index in zip(rebuilt.weights, model.weights, kept, strict=True):
        target.assign(np.asarray(rescaled.get(id(source), source))[np.ix_(*index)])
    for compensate in SIZE_CONSTANTS.get(type(model).__name__, ()):
        compensate(rebuilt, config, {**config, **changes}, task is not None)
    said = ", ".join(f"{key}={value}" for key, value in changes.items())
    return (rebuilt, "") if task is not None else _checked(model, rebuilt, masks, said)


def _pinned_head_size(model) -> dict:
    """``{"head_dim": size}`` when the config leaves it to be derived (None), else ``{}``.

    Mistral's backbone computes its head size as ``hidden_dim // num_query_heads``
    when ``head_dim`` is None: a config with fewer heads or a narrower hidden
    width would change it. Pinned to the size the built attention layers use,
    it stays.
    """
    if model.get_config().get("head_dim", 0) is not None:
        return {}
    for layer in model._flatten_layers(include_self=False):
        size = getattr(layer, "_head_dim", None)
        if isinstance(size, int):
            return {"head_dim": size}
    return {}


def _checked(model, rebuilt, masks: dict, said: str) -> tuple[keras.Model | None, str]:
    """``(rebuilt, "")`` if it computes what the masked model does, else ``(None, why)``."""
    gap = _gap_to_masked(model, rebuilt, masks)
    if gap <= 1e-4:
        return rebuilt, ""
    config = (getattr(rebuilt, "backbone", rebuilt)).get_config()
    said = said or ", ".join(f"{key}={config[key]}" for key in SIZE_KEYS if key in config)
    return None, (f"{type(rebuilt).__name__} with {said} holds the kept weights but computes "
                  f"other outputs than the masked model (relative gap {gap:.2g}): the class "
                  "derives something else from those sizes")


def _gemma_embedding_scale(rebuilt, old: dict, new: dict, tied_logits: bool) -> None:
    """Gemma multiplies its embeddings by ``sqrt(hidden_dim)``: a smaller one is made up for.

    The table is scaled by ``sqrt(d / k)``, so the blocks get what they got.
    In a causal LM the logits read the same table: the final normalization's
    ``1 + scale`` is then divided by that factor again, so the logits are
    those of the masked model (the backbone's own output is that factor
    smaller).
    """
    if new["hidden_dim"] == old["hidden_dim"]:
        return
    gain = np.sqrt(old["hidden_dim"] / new["hidden_dim"])
    table = rebuilt.token_embedding.embeddings
    table.assign(np.asarray(table) * gain)
    if tied_logits:
        scale = rebuilt.layer_norm.scale
        scale.assign((1.0 + np.asarray(scale, np.float64)) / gain - 1.0)


#: Class name -> functions ``(rebuilt, old config, new config, tied_logits)`` that make up,
#: in the rebuilt model's weights, for a constant the class computes from a size of its
#: config (``tied_logits``: the backbone is a task's whose logits read its embedding table).
#: The rebuilt model is then checked against the masked one (``_gap_to_masked``) either way.
SIZE_CONSTANTS = {name: (_gemma_embedding_scale,) for name in ("GemmaBackbone", "Gemma3Backbone")}


def _probe(model) -> object:
    """Inputs of the model's structure: integer inputs 1 or 2, float inputs normal."""
    rng = np.random.default_rng(0)

    def make(tensor):
        shape = [2 if axis == 0 else (size or 6) for axis, size in enumerate(tensor.shape)]
        if "int" in str(tensor.dtype) or "bool" in str(tensor.dtype):
            return rng.integers(1, 3, shape).astype(str(tensor.dtype).replace("bool", "int32"))
        return rng.normal(size=shape).astype("float32")

    return keras.tree.map_structure(make, model.input)


def _gap_to_masked(model, rebuilt, masks: dict) -> float:
    """The largest difference of the two models' outputs on a probe, relative to the masked."""
    probe = _probe(model)
    saved = [(v, np.asarray(v)) for v in model.weights if id(v) in masks]
    try:
        for variable, value in saved:
            variable.assign(value * np.asarray(masks[id(variable)], value.dtype))
        expected = [np.asarray(o, np.float64) for o in keras.tree.flatten(model(probe))]
    finally:
        for variable, value in saved:
            variable.assign(value)
    actual = [np.asarray(o, np.float64) for o in keras.tree.flatten(rebuilt(probe))]
    # A pruned hidden width shortens a backbone's output: its removed channels are zero
    # in the masked model's, and absent from the rebuilt model's.
    expected = [e if e.shape == a.shape else e[..., np.abs(e).reshape(-1, e.shape[-1]).any(0)]
                for e, a in zip(expected, actual, strict=True)]
    if [e.shape for e in expected] != [a.shape for a in actual]:
        return float("inf")
    scale = max(max(float(np.abs(e).max()) for e in expected), 1e-12)
    return max(float(np.abs(e - a).max()) for e, a in zip(expected, actual, strict=True)) / scale


def _mismatch(variables, shapes) -> tuple | None:
    """The first variable whose shape is not the kept one, as ``(path, shape, kept)``."""
    if len(variables) != len(shapes):
        return ("the weights", f"{len(variables)} variables", f"{len(shapes)}")
    return next(((v.path, tuple(v.shape), shape) for v, shape in
                 zip(variables, shapes, strict=True) if tuple(v.shape) != shape), None)


def _config_changes(model, config: dict, shapes: list) -> dict:
    """The size entries to change, each found alone (see the module docstring).

    A candidate value of an entry is kept when the model built with only that
    change differs from ``model`` in some shapes, and only where (and as) the
    plan shortens them.
    """
    original = [tuple(v.shape) for v in model.weights]
    wanted = {(i, axis): new for i, (old_shape, shape) in enumerate(zip(original, shapes,
                                                                          strict=True))
              for axis, (old, new) in enumerate(zip(old_shape, shape, strict=True)) if new != old}
    ratios = {(original[i][axis], new) for (i, axis), new in wanted.items()}
    changes = {}
    for key in SIZE_KEYS:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            continue
        for old, new in sorted(ratios):
            if old not in (value, 2 * value) and 2 * old != value:
                continue
            candidate = value * new // old
            if candidate < 1 or (value * new) % old:
                continue
            try:
                built = type(model).from_config({**config, key: candidate})
            except Exception:  # noqa: BLE001 - a value the class refuses is no candidate
                continue
            shape_changes = {(i, axis): length for i, v in enumerate(built.weights)
                             if i < len(original)
                             for axis, length in enumerate(v.shape)
                             if axis < len(original[i]) and length != original[i][axis]}
            if (len(built.weights) == len(original) and shape_changes
                    and all(wanted.get(place) == length
                            for place, length in shape_changes.items())):
                changes[key] = candidate
                break
    return changes


def _kept_indices(variable, mask) -> list[np.ndarray] | None:
    """Per axis, the kept indices, if the mask is their product (else None)."""
    shape = tuple(variable.shape)
    if mask is None:
        return [np.arange(n) for n in shape]
    mask = np.asarray(mask) != 0
    axes = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
            for axis in range(mask.ndim)]
    product = np.zeros(shape, bool)
    product[np.ix_(*axes)] = True
    return axes if np.array_equal(product, mask) else None
