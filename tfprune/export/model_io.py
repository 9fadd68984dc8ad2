"""A Keras model's inputs and outputs under the names its LiteRT signature gives them.

``model.export(format="litert")`` writes one signature, ``serving_default``.
Its inputs are named after the model's input tensors (``keras.Input(name=...)``);
its outputs after the keys of a dict of outputs, else ``output_0``,
``output_1``, ... in the order of ``model.outputs``. These helpers turn the
inputs a user would pass to ``model.predict`` (an array, a list, a dict) into
that signature's feed, and ``model.predict``'s result into outputs named the
same way, so a multi-input or multi-output model is compared head by head.
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune.graph.model_graph import pack_like


def input_names(model: keras.Model) -> list[str]:
    """The signature's input names, in the order of ``model.inputs``."""
    return [tensor.name for tensor in model.inputs]


def output_names(model: keras.Model) -> list[str]:
    """The signature's output names, in the order of ``model.outputs``."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict) and all(not isinstance(value, (dict, list, tuple))
                                          for value in structure.values()):
        return sorted(structure)  # keras.tree flattens a dict in sorted key order
    return [f"output_{index}" for index in range(len(model.outputs))]


def litert_feed(model: keras.Model, inputs) -> dict[str, np.ndarray]:
    """``inputs`` as ``model.predict`` takes them, keyed by the signature's input names.

    Raises:
        ValueError: When ``inputs`` does not hold one array per model input.
    """
    return _named(model, inputs, input_names(model), "input")


def named_outputs(model: keras.Model, outputs) -> dict[str, np.ndarray]:
    """``model.predict``'s result (an array, a list, a dict) keyed by the signature's names.

    Raises:
        ValueError: When ``outputs`` does not hold one array per model output.
    """
    return _named(model, outputs, output_names(model), "output")


def _named(model: keras.Model, values, names: list[str], kind: str) -> dict[str, np.ndarray]:
    arrays = [np.asarray(value) for value in keras.tree.flatten(values)]
    if len(arrays) != len(names):
        raise ValueError(f"model {model.name!r} has {len(names)} {kind}(s) ({names}); got "
                         f"{len(arrays)} array(s).")
    return dict(zip(names, arrays, strict=True))


def random_inputs(model: keras.Model, examples: int = 1, seed: int = 0):
    """Random inputs for every model input, structured as the model takes them.

    Float inputs are standard normal; integer inputs (token ids) are 0 or 1,
    valid indices for any embedding.
    """
    rng = np.random.default_rng(seed)
    arrays = [random_array([examples, *(1 if size is None else size for size in tensor.shape[1:])],
                           tensor.dtype, rng) for tensor in model.inputs]
    return pack_like(model, "inputs", arrays)


def random_array(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """Standard normal values for a float ``dtype``; 0 or 1 for an integer one (token ids)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.normal(size=shape).astype(dtype)
