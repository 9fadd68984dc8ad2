"""Mean absolute activation per channel or head, measured on calibration data.

The activation-based importance of Minitron (Muralidharan et al., 2024) and
of activation-pruning methods before it: a channel that is near zero on the
data contributes little downstream. For each scored unit, the activation is
what the unit puts out:

- a plain scored layer (Dense, Conv, EinsumDense, Embedding): its output's
  channel (last) axis, the unit of an MLP neuron or a conv filter;
- a unit over several kernels (attention heads, query groups, query heads):
  the input of its last kernel's layer (the output projection) along the
  head axis, that is each head's attention output, as Minitron scores heads.
  A query group sums its query heads.

The value per channel is the mean over the data's positions (samples, tokens,
pixels) of the sum of ``|a|`` over the channel's entries (one entry for a
neuron, ``head_dim`` for a head). Positions are weighted by the data's sample
weights when their shape is the positions' (a causal LM's padding mask), so
padding tokens do not count. Several workers sum their parts.

The layers are observed by wrapping their ``call`` for one forward pass per
batch, in inference mode, and restored after.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from tfprune.handlers.base import attribute
from tfprune.importance.scores import ScoringError
from tfprune.workers import sum_across_workers


def _observed_layer(unit) -> tuple[keras.layers.Layer, str, int]:
    """``(layer, "output" or "input", axis)``: where a scored unit's activation is read."""
    if not unit.parts:
        return unit.layer, "output", -1
    path, kernel_axis = unit.parts[-1]
    owner_path = path.rsplit(".", 1)[0]
    layer = attribute(unit.layer, owner_path) if owner_path != path else unit.layer
    return layer, "input", _input_axis(layer, kernel_axis)


def _input_axis(layer, kernel_axis: int) -> int:
    """The axis of ``layer``'s input that its kernel's ``kernel_axis`` contracts."""
    equation = getattr(layer, "equation", None)
    if equation:  # EinsumDense: the kernel's subscript, found in the input's
        inputs, rest = equation.replace(" ", "").split(",")
        kernel = rest.split("->")[0]
        letter = kernel[kernel_axis]
        if letter in inputs and "." not in inputs:
            return inputs.index(letter) - len(inputs)
    return -1  # Dense, Conv: the rows are the input's channels


class _Recorder:
    """Sums of ``|a|`` per channel and the weight of the positions they were taken over."""

    def __init__(self, size: int, axis: int):
        self.size, self.axis = size, axis
        self.total = np.zeros(size, np.float64)
        self.weight = 0.0
        self.position_weights = None

    def add(self, tensor) -> None:
        """Adds one observed tensor: positions before the channel axis, entries after it."""
        values = np.abs(np.asarray(keras.ops.convert_to_numpy(tensor), np.float64))
        if values.ndim < 2 or values.shape[self.axis] != self.size:
            return  # another use of a shared layer (a tied embedding's logits)
        axis = self.axis % values.ndim
        per_position = values.reshape(*values.shape[:axis + 1], -1).sum(axis=-1)
        weights = self._weights(per_position.shape[:-1])
        self.total += np.tensordot(weights, per_position, axes=weights.ndim)
        self.weight += float(weights.sum())

    def _weights(self, shape: tuple) -> np.ndarray:
        """The weight of each position: the batch's sample weights where they fit, else 1.

        Sample weights of shape ``(samples,)`` or ``(samples, tokens)`` weight
        the leading position axes; inner ones (pixels) count alike.
        """
        given = self.position_weights
        if given is not None and given.ndim <= len(shape) and given.shape == shape[:given.ndim]:
            return np.broadcast_to(given.reshape(given.shape + (1,) * (len(shape) - given.ndim)),
                                   shape)
        return np.ones(shape)


@contextlib.contextmanager
def _recording(units: list, recorders: list):
    """Wraps each observed layer's ``call`` to feed its recorders; restores them after."""
    by_layer: dict[int, tuple] = {}
    for unit, recorder in zip(units, recorders, strict=True):
        layer, where, _ = _observed_layer(unit)
        by_layer.setdefault(id(layer), (layer, []))[1].append((where, recorder))
    wrapped = []
    try:
        for layer, watchers in by_layer.values():
            original = layer.call

            def call(*args, _original=original, _watchers=watchers, **kwargs):
                output = _original(*args, **kwargs)
                for where, recorder in _watchers:
                    observed = args[0] if where == "input" else output
                    if isinstance(observed, (list, tuple)):
                        observed = observed[0]
                    recorder.add(observed)
                return output

            object.__setattr__(layer, "call", call)
            wrapped.append(layer)
        yield
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")


def mean_activations(model: keras.Model, units: list, batches: list,
                     strategy=None) -> dict[str, np.ndarray]:
    """Per scored unit, the mean over the data of ``|activation|`` per channel.

    Args:
        model: The model to run (eagerly, in inference mode).
        units: ``PrunableLayer``s (``tfprune.importance.prunable``).
        batches: ``(x, y, sample_weight)`` batches; ``sample_weight`` (or
            None) weights the positions when its shape is theirs.
        strategy: Several workers sum their parts (default: the one in scope).

    Returns:
        ``{unit name: one value per filter}``.

    Raises:
        ScoringError: If a unit's layer never ran on the data.
    """
    recorders = []
    for unit in units:
        _, where, axis = _observed_layer(unit)
        size = unit.filters if where == "output" else _observed_size(unit)
        recorders.append(_Recorder(size, axis))
    with _recording(units, recorders):
        for x, _, weight in batches:
            for recorder in recorders:
                recorder.position_weights = None if weight is None else np.asarray(weight)
            model(x, training=False)
    totals = sum_across_workers(
        [tf.constant(np.concatenate([[r.weight], r.total])) for r in recorders], strategy)
    result = {}
    for unit, summed in zip(units, totals, strict=True):
        summed = np.asarray(summed, np.float64)
        if summed[0] <= 0:
            raise ScoringError(f"activation: layer {unit.name!r} did not run on the data (or "
                               "every position had weight 0), so it has no activation.")
        per_channel = summed[1:] / summed[0]
        if per_channel.size != unit.filters:  # a query group: its query heads, contiguous
            per_channel = per_channel.reshape(unit.filters, -1).sum(axis=1)
        result[unit.name] = per_channel
    return result


def _observed_size(unit) -> int:
    """The length of the head axis of the input a unit's last kernel reads."""
    path, kernel_axis = unit.parts[-1]
    return int(attribute(unit.layer, path).shape[kernel_axis])
