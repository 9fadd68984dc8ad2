"""Masks: from a ``PruningPlan`` to per-variable 0/1 arrays, applied once or enforced in training.

``apply_plan`` zeroes the removed channels in place. ``MaskEnforcer`` keeps
them zero during ``model.fit``: each masked variable gets a Keras constraint
multiplying it by a mask variable, which the optimizer applies right after
every update inside the compiled train step (no Python loop per batch).
Updating the masks between rounds assigns the mask variables, so nothing is
retraced. The constraint is also set on its layer (``kernel_constraint``,
...), so ``model.save`` stores it and a reloaded model keeps its masks.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfprune.graph.channels import ChannelGraph, combined_masks, graph_for
from tfprune.graph.model_graph import calls
from tfprune.handlers import handler_for
from tfprune.importance.prunable import prunable_layers
from tfprune.keras_objects import MaskConstraint
from tfprune.plans.pruning_plan import PlanError, PruningPlan, check_plan_fits
from tfprune.pruning.depth import depth_masks
from tfprune.slimming.depth import block_calls, block_names, has_blocks
from tfprune.workers import model_strategy, require_same_plan


def variable_masks(model: keras.Model, plan: PruningPlan, ignored_layers=()) -> list:
    """Returns ``[(variable, mask array)]`` for every variable the plan touches.

    A variable touched twice (a conv's output filters and its input channels)
    gets the product of both masks.
    """
    if plan.granularity == "weight":
        layers = {layer.name: layer for layer in prunable_layers(model, units=False)}
        missing = sorted(set(plan.keep) - set(layers))
        if missing:
            raise PlanError(f"the plan masks layers {missing}, which have no prunable kernel "
                            "in this model.")
        return [(layers[n].kernel, plan.keep[n].astype(np.float32)) for n in plan.keep]
    graph = graph_for(model, plan.settings.get("ignored_layers", ignored_layers),
                      plan.settings.get("gqa", "groups"))
    check_plan_fits(graph, plan)
    pairs = graph_variable_masks(graph, {g.index: plan.keep[str(g.index)] for g in graph.groups})
    return combined_masks(pairs + _block_masks(graph, plan)) if plan.removed_blocks else pairs


def _block_masks(graph: ChannelGraph, plan: PruningPlan) -> list:
    """The masks zeroing the residual writes of the plan's removed blocks."""
    names = block_names(graph.model)
    if names != plan.blocks["names"]:
        raise PlanError(f"the plan removes blocks of another model: its blocks are "
                        f"{plan.blocks['names'][:2]}..., the model's {names[:2]}...")
    return depth_masks(graph, block_calls(graph), np.asarray(plan.blocks["keep"], bool))


def graph_variable_masks(graph: ChannelGraph, keep: dict) -> list:
    """``variable_masks`` for an analysed graph and ``{group index: keep-mask}``."""
    return graph.variable_masks(keep)


def apply_plan(model: keras.Model, plan: PruningPlan) -> keras.Model:
    """Zeroes the plan's removed channels (or weights) of ``model`` in place.

    Args:
        model: A model of the architecture the plan was made for.
        plan: A ``PruningPlan`` (``tfprune.make_plan`` or ``PruningPlan.load``).

    Returns:
        The same model.

    Raises:
        tfprune.workers.WorkersDisagreeError: Under a multi-worker strategy, when
            another worker's plan differs (checked before any weight changes).
    """
    require_same_plan(plan, model_strategy(model))
    for variable, mask in variable_masks(model, plan):
        variable.assign(variable * tf.cast(mask, variable.dtype))
    return model


def _maskable_variables(model: keras.Model, granularity: str, ignored_layers=()) -> list:
    """Every variable a plan of this granularity could mask."""
    if granularity == "weight":
        return [layer.kernel for layer in prunable_layers(model, units=False)]
    graph = graph_for(model, ignored_layers)
    pairs = graph_variable_masks(graph, {g.index: np.ones(g.size, bool) for g in graph.groups})
    if has_blocks(model):  # a depth plan masks what each block writes to the residual stream
        try:
            blocks = block_calls(graph)
            pairs = combined_masks(pairs + depth_masks(graph, blocks, np.zeros(len(blocks), bool)))
        except PlanError:
            pass  # blocks that cannot be masked out: a depth plan is refused when made
    return [variable for variable, _ in pairs]


def _constraint_slots(model: keras.Model) -> dict[int, tuple]:
    """``id(variable) -> (layer, constraint attribute)``, as each layer's handler says."""
    slots = {}
    for call in calls(model):
        handler = handler_for(call.operation)
        if handler is not None:
            slots.update(handler.constraint_slots(call.operation))
    return slots


class MaskEnforcer:
    """Keeps a model's removed channels at exactly zero while it trains.

    Installing twice (a second ``fit``, a second enforcer, a reloaded model)
    reuses the mask constraints already on the variables instead of stacking
    new ones.

    Args:
        model: The model (functional or Sequential, built).
        granularity: ``"filter"`` or ``"weight"``.
        ignored_layers: Layers the channel analysis leaves alone.

    Example:
        >>> enforcer = MaskEnforcer(model)
        >>> enforcer.install()            # before model.fit traces its train step
        >>> enforcer.update(plan)         # zero now, keep zero, reset optimizer slots
    """

    def __init__(self, model: keras.Model, granularity: str = "filter", ignored_layers=()):
        self.model = model
        self.granularity = granularity
        self.ignored_layers = tuple(ignored_layers)
        self.masks: dict[int, tf.Variable] = {}
        self._variables = {}

    def install(self) -> None:
        """Puts a ``MaskConstraint`` (all ones until ``update``) on every maskable variable."""
        slots = _constraint_slots(self.model)
        for variable in _maskable_variables(self.model, self.granularity, self.ignored_layers):
            if id(variable) in self.masks or not variable.trainable:
                continue  # moving statistics: no optimizer step to constrain; update zeroes them
            constraint = variable.constraint
            if not isinstance(constraint, MaskConstraint):
                mask = tf.Variable(tf.ones(variable.shape, variable.dtype), trainable=False,
                                   name=f"mask_{variable.path.replace('/', '_')}")
                constraint = MaskConstraint(mask, constraint)
            self._set_constraint(variable, constraint, slots)
            self.masks[id(variable)] = constraint.mask
            self._variables[id(variable)] = variable

    @staticmethod
    def _set_constraint(variable, constraint, slots) -> None:
        variable.constraint = constraint
        if id(variable) in slots:
            layer, attribute = slots[id(variable)]
            setattr(layer, attribute, constraint)

    def remove(self) -> None:
        """Takes the constraints off again (the weights stay as they are)."""
        slots = _constraint_slots(self.model)
        for key, variable in self._variables.items():
            if isinstance(variable.constraint, MaskConstraint):
                self._set_constraint(variable, variable.constraint.inner, slots)
            self.masks.pop(key, None)
        self._variables = {}

    def update(self, plan: PruningPlan, optimizer=None) -> None:
        """Sets the masks from a plan, zeroes the weights and the optimizer's slots for them.

        Under a multi-worker strategy every worker's plan must be the same
        (``tfprune.workers.require_same_plan``), checked before any mask changes.
        """
        require_same_plan(plan, model_strategy(self.model))
        if not self.masks:
            self.install()
        for variable, mask in variable_masks(self.model, plan, self.ignored_layers):
            if id(variable) in self.masks:
                self.masks[id(variable)].assign(tf.cast(mask, variable.dtype))
            variable.assign(variable * tf.cast(mask, variable.dtype))
            if optimizer is not None:
                reset_slots(optimizer, variable, mask)


def reset_optimizer_state(optimizer) -> None:
    """Zeroes every slot of ``optimizer`` (momentum, Adam's moments...), as a new optimizer has.

    The reference code starts a new optimizer at each pruning round; this does
    the same to the optimizer in place (its step counter and learning rate are
    kept, so learning-rate schedules go on). A ``LossScaleOptimizer`` keeps its
    loss scale; its inner optimizer's slots are zeroed.
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        reset_optimizer_state(inner)
        return
    kept = {id(optimizer.iterations)}
    rate = getattr(optimizer, "_learning_rate", None)
    if isinstance(rate, keras.Variable):
        kept.add(id(rate))
    for slot in optimizer.variables:
        if id(slot) not in kept:
            slot.assign(tf.zeros(slot.shape, slot.dtype))


def reset_slots(optimizer, variable, mask) -> None:
    """Zeroes the optimizer's slots (momentum, ...) of a variable's masked entries."""
    prefix = variable.path.replace("/", "_") + "_"
    for slot in optimizer.variables:
        if slot.name.startswith(prefix) and tuple(slot.shape) == tuple(variable.shape):
            slot.assign(slot * tf.cast(mask, slot.dtype))
