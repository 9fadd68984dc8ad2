"""Which layers of a model are scored, and how their kernels split into filters.

A layer is scored when its ``LayerHandler`` (``tfprune.handlers``) names a
``scored_kernel`` whose ``filter_axis`` indexes the layer's output channels:
Conv1D/2D/3D and Dense (one filter per output unit), Conv*DTranspose,
DepthwiseConv (one per channel), SeparableConv (the pointwise kernel's
columns) and Embedding (the table's columns). Nested models' layers are
scored too. ``register_layer_handler`` makes more types prunable.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune.graph.model_graph import Call, operation_order, producers, walk
from tfprune.handlers import GraphError, handler_for
from tfprune.handlers.base import attribute, unprunable_reason
from tfprune.importance.scores import ScoringError


@dataclasses.dataclass(frozen=True)
class PrunableLayer:
    """A scored layer (or unit of one): its kernel and how the kernel splits into filters.

    Most scored layers have one kernel with an axis indexing their output
    channels. A unit spread over several kernels (MultiHeadAttention's heads:
    slices of the query, key, value and output projections) lists them in
    ``parts``; its "kernel" is then their slices gathered into one
    ``(elements, filters)`` array (``gather``), which every measure scores
    like a kernel, so a head's score reduces over all its slices.

    Attributes:
        layer: The Keras layer.
        kernel_attribute: The attribute (dotted path) holding its kernel variable.
        filters: The number of output channels (filters, heads) of the unit.
        batch_norm: The BatchNormalization fed directly by this layer, or None.
        filter_axis: The kernel axis indexing the filters.
        parts: For a unit over several kernels: ``((attribute path, filter
            axis), ...)``; empty for a plain layer.
        unit: The unit's name inside the layer (``"heads"``), or None.
        layer_name: The name the layer is known by in the model's graph (its
            path, ``block_0/attention``, when another layer shares its name);
            its own name when empty.
    """

    layer: keras.layers.Layer
    kernel_attribute: str | None
    filters: int
    batch_norm: keras.layers.BatchNormalization | None
    filter_axis: int = -1
    parts: tuple = ()
    unit: str | None = None
    layer_name: str = ""

    @property
    def kernel(self) -> keras.Variable:
        """The kernel variable (a plain layer's; see ``variables`` for a unit's)."""
        if self.parts:
            raise ScoringError(f"{self.name!r} spans several kernels ({self.paths}); read "
                               "its variables or gather them.")
        return attribute(self.layer, self.kernel_attribute)

    @property
    def paths(self) -> list[str]:
        """The attribute paths of its kernels."""
        return [path for path, _ in self.parts] if self.parts else [self.kernel_attribute]

    @property
    def variables(self) -> list:
        """Its kernel variables: the kernel, or every kernel a unit spans."""
        return [attribute(self.layer, path) for path in self.paths]

    @property
    def shape(self) -> tuple:
        """The shape of what measures score: the kernel's, or ``(elements, filters)``."""
        if not self.parts:
            return tuple(self.kernel.shape)
        return (sum(int(np.prod(v.shape)) for v in self.variables) // self.filters, self.filters)

    @property
    def name(self) -> str:
        """The key of its scores: the layer's name, or ``layer/unit`` (``attention/heads``)."""
        layer = self.layer_name or self.layer.name
        return layer if self.unit is None else f"{layer}/{self.unit}"

    def gather(self, arrays) -> np.ndarray:
        """One array from per-kernel arrays (values, g, Hg of ``variables``, in order).

        A plain layer's is its kernel's; a unit's is every kernel's slices with
        the filter axis moved last, stacked into ``(elements, filters)`` (an
        axis with ``k`` entries per unit holds contiguous blocks of ``k``).
        """
        if not self.parts:
            return np.asarray(arrays[0])
        return np.concatenate([self._by_unit(array, axis)
                               for array, (_, axis) in zip(arrays, self.parts, strict=True)])

    def _by_unit(self, array, axis: int) -> np.ndarray:
        """``(elements, filters)`` of one kernel whose ``axis`` holds the units.

        An axis of ``k x filters`` entries holds ``filters`` contiguous blocks
        of ``k`` (a query group's ``k`` query heads).
        """
        moved = np.moveaxis(np.asarray(array), axis, -1)
        size = moved.shape[-1]
        if size != self.filters:
            moved = np.moveaxis(moved.reshape(*moved.shape[:-1], self.filters,
                                              size // self.filters), -2, -1)
        return moved.reshape(-1, self.filters)

    def read(self, layer) -> np.ndarray:
        """``gather`` of the same kernels of another layer (an initial model's)."""
        return self.gather([np.asarray(attribute(layer, path)) for path in self.paths])

    def by_filter(self, array: np.ndarray) -> np.ndarray:
        """Reshapes a kernel-shaped array to ``(elements_per_filter, filters)``."""
        if self.filter_axis not in (-1, np.ndim(array) - 1):
            array = np.moveaxis(array, self.filter_axis, -1)
        return np.reshape(array, (-1, self.filters))


def _output_layers(model: keras.Model, made_by: dict) -> set[int]:
    """Ids of the weighted layers that produce a model output.

    Looks through weightless single-input layers such as a final Softmax.
    """
    found = set()
    for tensor in model.outputs:
        call = made_by.get(id(tensor))
        while call is not None and not getattr(call.operation, "weights", None) and len(
                call.inputs) == 1:
            call = made_by.get(id(call.inputs[0]))
        if call is not None:
            found.add(id(call.operation))
    return found


def _batch_norms_by_input(calls: list, made_by: dict) -> dict[int, keras.layers.Layer]:
    """Maps id(layer) -> the BatchNormalization that directly follows it.

    ``TimeDistributed(BatchNormalization)`` counts as the one it wraps.
    """
    follows = {}
    for call in calls:
        handler = handler_for(call.operation)
        norm = handler.batch_statistics(call.operation) if handler is not None else None
        if norm is not None and call.inputs:
            producer = made_by.get(id(call.inputs[0]))
            if producer is not None:
                follows[id(producer.operation)] = norm
    return follows


def prunable_layers(model: keras.Model, include_output_layers: bool = False,
                    units: bool = True) -> list[PrunableLayer]:
    """Lists the layers of a model that get importance scores, in graph order.

    Args:
        model: A built functional or Sequential Keras model (nested models included).
        include_output_layers: Also score layers producing a model output (the
            classifier). Structured pruning never removes classifier outputs,
            so they are left out by default.
        units: Also list the units spread over several kernels (attention
            heads: ``handler.inner_units``), which only structured plans use.

    Returns:
        One ``PrunableLayer`` per prunable layer with a kernel, then its units.

    Raises:
        ScoringError: If the model is not built, has no graph, or has no prunable layer.
    """
    if not model.built or not getattr(model, "outputs", None):
        raise ScoringError(
            f"model {model.name!r} is not a built functional model; build it (call it on "
            "an input or construct it with keras.Input) before scoring."
        )
    try:
        calls = [step for step in walk(model) if isinstance(step, Call)]
    except GraphError as error:
        raise ScoringError(str(error)) from None
    made_by = producers(model)
    outputs = set() if include_output_layers else _output_layers(model, made_by)
    batch_norms = _batch_norms_by_input(calls, made_by)
    found, seen = [], set()
    for call in calls:
        handler = handler_for(call.operation)
        if handler is None or id(call.operation) in seen or (
                id(call.operation) in outputs and handler.scores_output_channels):
            continue
        seen.add(id(call.operation))  # a shared layer is one set of weights
        if handler.scored_kernel is not None:
            found.append(PrunableLayer(call.operation, handler.scored_kernel,
                                       int(call.outputs[0].shape[-1]),
                                       batch_norms.get(id(call.operation)), handler.filter_axis,
                                       layer_name=call.name))
        if units:
            found += [PrunableLayer(call.operation, None, size, None, parts=tuple(parts),
                                    unit=unit, layer_name=call.name)
                      for unit, (size, parts) in handler.inner_units(call.operation).items()]
    order = {name: index for index, name in enumerate(operation_order(model))}
    found.sort(key=lambda prunable: order.get(prunable.layer_name, len(order)))
    if not found:
        kept = {call.name: unprunable_reason(call.operation) for call in calls
                if unprunable_reason(call.operation)}
        raise ScoringError(
            f"model {model.name!r} has no prunable layer besides its outputs (no layer whose "
            "handler scores a kernel: Conv, Dense, SeparableConv, DepthwiseConv, "
            "Conv*Transpose, Embedding, or a type given register_layer_handler)."
            + "".join(f" {name!r} is kept whole: {why}." for name, why in kept.items())
        )
    return found


def prunable_weight_count(model: keras.Model) -> int:
    """The kernel entries an unstructured (weight) plan ranks: every prunable kernel's."""
    return int(sum(np.prod(layer.kernel.shape) for layer in prunable_layers(model, units=False)))
