"""``slim``: rebuild a functional model with only the channels a plan keeps.

Each layer (and keras.ops node) is rebuilt from its ``get_config`` (with
fewer filters or units where its output group lost channels) and called on
the rebuilt inputs in graph order; its weights are copied with the removed
channels sliced out. How a type changes is its ``LayerHandler``'s ``slim``
(``tfprune.handlers``). Nested models come out inlined: the result is one
flat functional model, in which a sublayer known by its path
(``block_0/attention``) is named by it with underscores (``block_0_attention``).
A composite layer whose call reads its inputs' sizes stays one layer, of its
own class, around its slimmed sublayers (``tfprune.slimming.composites``).
"""

from __future__ import annotations

import dataclasses
import warnings

import keras
import numpy as np

from tfprune.graph.channels import ChannelGraph, graph_for
from tfprune.graph.model_graph import (
    Alias,
    composite_graph,
    functional_graph,
    is_nested_model,
    output_specs_from_call,
    pack_like,
    tensors_only,
    traced_concretely,
)
from tfprune.importance.task_data import task_preprocessor
from tfprune.keras_objects import SlimmedComposite, TensorOutputs, slimmed_class
from tfprune.layer_configs import layer_config, rebuild
from tfprune.layer_state import copy_layer_state
from tfprune.plans.pruning_plan import PlanError, PruningPlan, check_plan_fits
from tfprune.slimming.composites import copy_untouched_weights, rebuild_composite
from tfprune.slimming.depth import drop_blocks, plan_without_blocks
from tfprune.slimming.same_class import is_hub_model, same_class_slim

_FRAMEWORKS = ("keras.", "tensorflow.")  # the classes every model inherits from


def _warn_of_own_methods(model: keras.Model) -> None:
    """Warns when the model's class adds methods a rebuilt plain ``keras.Model`` lacks."""
    own = sorted({name for cls in type(model).__mro__
                  if cls is not object and not cls.__module__.startswith(_FRAMEWORKS)
                  for name, value in vars(cls).items()
                  if callable(value) and not name.startswith("_")})
    if own and task_preprocessor(model) is not None:
        warnings.warn(
            f"model {model.name!r} is a keras-hub {type(model).__name__}: the slimmed model is "
            "a plain keras.Model computing its outputs from the same preprocessed inputs; call "
            "the task's preprocessor on raw inputs first (x, y = task.preprocessor(x, y)).",
            stacklevel=3)
    elif own:
        warnings.warn(
            f"model {model.name!r} is a {type(model).__name__}, your own keras.Model "
            f"subclass: the slimmed model is a plain keras.Model with the same layers, "
            f"inputs and outputs, without {type(model).__name__}'s methods ({', '.join(own)}). "
            "Train it with those by rebuilding your class around the slimmed model's layers, "
            "or wrap it.", stacklevel=3)


class SlimContext:
    """What a handler needs: which input and output channels of a layer survive.

    Args:
        graph: The model's ``ChannelGraph``.
        keep: ``{group index: boolean keep-mask}``.
    """

    def __init__(self, graph: ChannelGraph, keep: dict[int, np.ndarray]):
        self.graph = graph
        self.keep = keep

    def input_index(self, layer) -> np.ndarray | None:
        """Indices of the kept input channels of ``layer`` (None: all kept)."""
        name = self.graph.name_of(layer)
        mask = self.graph.channel_mask(self.graph.layer_inputs.get(name), self.keep)
        return None if mask is None else np.flatnonzero(mask)

    def input_width(self, layer) -> int | None:
        """The width of ``layer``'s main input after slimming (None: not a tracked tensor)."""
        layout = self.graph.layer_inputs.get(self.graph.name_of(layer))
        if layout is None:
            return None
        mask = self.graph.channel_mask(layout, self.keep)
        if mask is None:
            return layout.tiles * sum(size for _, size in layout.spaces)
        return int(np.count_nonzero(mask))

    def inner_index(self, layer, unit: str) -> np.ndarray | None:
        """Indices of the kept channels of ``layer``'s inner ``unit`` (None: all kept)."""
        mask = self.graph.inner_masks(self.graph.name_of(layer), self.keep).get(unit)
        return None if mask is None else np.flatnonzero(mask)

    def output_index(self, layer) -> np.ndarray | None:
        """Indices of the kept output channels of ``layer`` (None: all kept)."""
        name = self.graph.name_of(layer)
        mask = self.graph.channel_mask(self.graph.layer_outputs[name], self.keep)
        return None if mask is None else np.flatnonzero(mask)


def _build_at_known_width(layer, original, args: tuple, context: SlimContext) -> None:
    """Build ``layer`` at its slimmed input width when its input's last axis is unknown.

    A composite's ``call`` may merge heads with ``reshape(x, (batch, length, -1))``
    (DINOv3's and RoFormerV2's attention): traced, the last axis is None, and a
    rebuilt projection could not create its kernel from it. The composite built
    its own projection beforehand, from its config; the slimmed width is known
    from the plan, or, where the traced width was unknown (its channels kept
    whole), from the shape ``original`` was built with.
    """
    main = args[0] if args else None
    if (not isinstance(layer, keras.layers.Layer) or layer.built
            or not isinstance(main, keras.KerasTensor)
            or not main.shape or main.shape[-1] is not None):
        return
    width = context.input_width(original)  # (only here: most calls return above)
    if not width:
        shapes = list((getattr(original, "_build_shapes_dict", None) or {}).values())
        width = shapes[0][-1] if shapes and shapes[0] else None
    if width:
        layer.build(tuple(main.shape[:-1]) + (int(width),))


def _saveable(original, config: dict, rebuilt):
    """``rebuilt``, or, if its ``get_config`` fails, the same as a ``slimmed_class``.

    Some keras-hub sublayers are never saved on their own (their block is):
    their ``get_config`` reads attributes they never set (keras-hub 0.32's
    ``RoformrPositionalEmbedding``). Inlined by a flat slim, such a layer is
    rebuilt as a subclass that saves the arguments read from its attributes
    (``tfprune.keras_objects.SlimmedComposite``), so the slimmed model saves
    and loads.
    """
    if not isinstance(rebuilt, keras.layers.Layer) or isinstance(rebuilt, SlimmedComposite):
        return rebuilt
    try:
        rebuilt.get_config()
        return rebuilt
    except (NotImplementedError, AttributeError):
        return rebuild(original, config, slimmed_class(type(rebuilt)))


def _rebuilt_in_place(step: Alias) -> bool:
    """Whether the composite entered or left is rebuilt in place (traced at fixed sizes)."""
    if step.container is None or is_nested_model(step.container):
        return False
    return traced_concretely(composite_graph(step.container, step.node))


@dataclasses.dataclass
class _InPlace:
    """The composites being rebuilt in place: entered ones, rebuilt ones, weights to copy.

    Attributes:
        stack: The in-place composites entered and not yet left (outermost first).
        clones: ``{id(original composite): its rebuilt clone}``; a composite
            called more than once is rebuilt once, and its clone called as often.
        copies: ``(fresh sublayer, original)`` pairs whose weights are copied last.
    """

    stack: list = dataclasses.field(default_factory=list)
    clones: dict = dataclasses.field(default_factory=dict)
    copies: list = dataclasses.field(default_factory=list)


def _in_place_boundary(step: Alias, state: _InPlace, rebuilt_layers: dict, graph,
                       tensors, pending: list) -> None:
    """Enters or leaves a composite rebuilt in place.

    Entering the outermost one, its traced graph runs on stand-ins of the
    traced sizes (with the slimmed channel counts), which builds the slimmed
    sublayers; leaving it, the rebuilt composite is called on the real tensors.
    """
    if step.entering:
        if state.stack:
            _map(step, tensors)
        else:
            for source, target in zip(step.sources, step.targets, strict=True):
                channels = tensors[id(source)].shape[-1]
                tensors[id(target)] = keras.Input(batch_shape=(*target.shape[:-1], channels),
                                                  dtype=target.dtype)
        state.stack.append(step)
        return
    state.stack.pop()
    if state.stack:
        _map(step, tensors)
        return
    clone = state.clones.get(id(step.container))
    if clone is None:
        weights = {id(layer): values for layer, values in pending}
        inside = {id(sub) for sub in step.container._flatten_layers(include_self=False)}
        replacements = {id(graph.operations[name]): layer
                        for name, layer in rebuilt_layers.items()
                        if id(graph.operations[name]) in inside
                        and _changed(graph.operations[name], layer, weights.get(id(layer)))}
        clone = state.clones[id(step.container)] = rebuild_composite(
            step.container, replacements, state.copies, name=step.name.replace("/", "_"))
    args, kwargs = step.node.arguments.fill_in(tensors)
    outputs = clone(*args, **kwargs)
    for old, new in zip(step.targets, tensors_only(outputs), strict=True):
        tensors[id(old)] = new


def _changed(original, rebuilt, weights: list | None) -> bool:
    """Whether a rebuilt sublayer differs from the original (class, config or weights).

    A composite rebuilt in place keeps its own fresh sublayer, with the
    original's weights, where the plan leaves one unchanged: it then saves and
    loads from the composite's own config (keras-hub's experts' blocks cannot
    be rebuilt from theirs).
    """
    if type(rebuilt) is not type(original) or not isinstance(original, keras.layers.Layer):
        return True  # (a keras.ops node is no composite's attribute)
    try:
        configs = [{k: v for k, v in layer_config(layer).items() if k != "name"}
                   for layer in (original, rebuilt)]
        if configs[0] != configs[1]:
            return True
    except Exception:  # noqa: BLE001 - a config that cannot be compared counts as changed
        return True
    values = weights if weights is not None else rebuilt.get_weights()
    originals = original.get_weights()
    return len(values) != len(originals) or any(
        np.shape(a) != np.shape(b) or not np.array_equal(a, b)
        for a, b in zip(values, originals, strict=True))


def _map(step: Alias, tensors: dict) -> None:
    for source, target in zip(step.sources, step.targets, strict=True):
        tensors[id(target)] = tensors[id(source)]


def slim(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """Returns a new, smaller model with only the channels ``plan`` keeps.

    Its outputs equal those of ``model`` after ``apply_plan(model, plan)``
    (inference mode).

    Args:
        model: The functional model the plan was made for (its weights are copied).
        plan: A structured ``PruningPlan`` (``tfprune.make_plan``, ``PruningPlan.load``).

    Raises:
        PlanError: For an unstructured plan or one made for another architecture.
        GraphError: For a layer slim cannot rebuild (naming it and its type).

    A plan that removes transformer blocks (depth) first rebuilds the model
    without them (``tfprune.slimming.depth``). A keras-hub backbone (or a
    causal LM whose weights are all its backbone's) under a uniform plan
    comes out as its own class with a smaller config
    (``tfprune.slimming.same_class``); under any other plan, as a flat
    functional model, with a warning saying why.

    Warns:
        UserWarning: When ``model`` is an instance of your own ``keras.Model``
            subclass built functionally: the slimmed model is a plain
            ``keras.Model``, without the subclass's methods (``train_step``...).
    """
    if plan.granularity != "filter":
        raise PlanError("slim needs a structured (filter) plan; unstructured masks keep shapes.")
    graph = graph_for(model, plan.settings.get("ignored_layers", ()),
                      plan.settings.get("gqa", "groups"))
    check_plan_fits(graph, plan)
    if plan.removed_blocks:  # depth: the model without those blocks, then its channels
        try:
            shallow = drop_blocks(model, plan.removed_blocks)
        except ValueError as error:
            raise PlanError(f"slim: {error}") from None
        channels = plan_without_blocks(plan, graph, shallow)
        return shallow if channels.removed == 0 else slim(shallow, channels)
    keep = {g.index: plan.keep[str(g.index)] for g in graph.groups}
    if is_hub_model(model):
        context = SlimContext(graph, keep)
        why = next(filter(None, (graph.handler(call.name).same_class_obstacle(
            call.operation, context) for call in graph.calls)), None)
        if why is None:
            rescaled = {id(variable): value for call in graph.calls
                        for variable, value in graph.handler(call.name).rescaled_weights(
                            call.operation, context)}
            rebuilt, why = same_class_slim(
                model, {id(v): m for v, m in graph.variable_masks(keep)}, rescaled)
            if rebuilt is not None:
                return rebuilt
        warnings.warn(f"model {model.name!r} is slimmed to a flat functional model, not a "
                      f"{type(model).__name__}: {why}.", stacklevel=2)
    if not is_hub_model(model) or task_preprocessor(model) is not None:
        _warn_of_own_methods(model)
    context = SlimContext(graph, keep)
    original = functional_graph(model)
    tensors = {}
    for tensor in original.inputs:
        tensors[id(tensor)] = keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype,
                                          name=tensor._keras_history.operation.name)
    pending, rebuilt_layers, in_place, wrappers = [], {}, _InPlace(), {}
    with output_specs_from_call():  # layers whose compute_output_shape fails (keras-hub)
        for step in graph.steps:
            if isinstance(step, Alias):
                if in_place.stack or _rebuilt_in_place(step):
                    _in_place_boundary(step, in_place, rebuilt_layers, graph, tensors, pending)
                else:
                    _map(step, tensors)
                continue
            rebuilt = rebuilt_layers.get(step.name)  # a shared layer stays shared
            if rebuilt is None:
                handler = graph.handler(step.name)
                config, weights = handler.slim(step.operation, context)
                if step.name != step.operation.name:  # a sublayer named by its path
                    config = {**config, "name": step.name.replace("/", "_")}
                rebuilt = rebuild(step.operation, config,
                                  handler.rebuilt_class(step.operation, context))
                if not in_place.stack:  # (a composite's sublayers save with it)
                    rebuilt = _saveable(step.operation, config, rebuilt)
                rebuilt_layers[step.name] = rebuilt
                if weights:
                    pending.append((rebuilt, weights))
            args, kwargs = step.node.arguments.fill_in(tensors)
            if in_place.stack:  # on stand-ins, as traced: None arguments left out (model_graph)
                kwargs = {key: value for key, value in kwargs.items() if value is not None}
            _build_at_known_width(rebuilt, step.operation, args, context)
            outputs = rebuilt(*args, **kwargs)
            if len(tensors_only(outputs)) != len(keras.tree.flatten(outputs)):  # some Nones
                if step.name not in wrappers:
                    wrappers[step.name] = TensorOutputs(rebuilt, name=rebuilt.name)
                outputs = wrappers[step.name](*args, **kwargs)
            for old, new in zip(step.outputs, tensors_only(outputs), strict=True):
                tensors[id(old)] = new
    # The model's own input and output structure (a dict of named outputs stays a dict).
    inputs = pack_like(original, "inputs", [tensors[id(t)] for t in original.inputs])
    outputs = pack_like(original, "outputs", [tensors[id(t)] for t in original.outputs])
    slimmed = keras.Model(inputs, outputs, name=f"{model.name}_slim")
    for rebuilt, weights in pending:
        rebuilt.set_weights(weights)
    copy_untouched_weights(in_place.copies)
    for step in graph.steps:  # an adapted vocabulary is in neither config nor weights
        if not isinstance(step, Alias) and step.name in rebuilt_layers:
            copy_layer_state(step.operation, rebuilt_layers.pop(step.name))
    return slimmed

