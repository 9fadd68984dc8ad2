"""tfprune's Keras-serializable objects that saved models refer to.

The mask constraint, the LayerNormalization of a slimmed hidden width, and the
composite layers ``slim`` rebuilds around slimmed sublayers.
``import tfprune`` imports this module (and ``tfprune.losses``), so a model saved
by tfprune (a pruned run's ``model.keras``, whose layers carry
``MaskConstraint``s, compiled with ``TemperatureCrossEntropy``; a slimmed
transformer with ``KeptChannelsLayerNormalization``; a slimmed keras-hub decoder
with ``SlimmedComposite`` blocks) loads with plain
``keras.saving.load_model`` after ``import tfprune``. It is tfprune's one
deliberate import-time effect: Keras' registry of custom objects.
"""

from __future__ import annotations

import base64
import importlib

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfprune.layer_configs import (
    completed_config,
    constructor_config,
    layer_config,
    missing_arguments,
    taken_keys,
)
from tfprune.storage import StorageError


@keras.saving.register_keras_serializable(package="tfprune")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a variable by a mask variable after each optimizer update.

    It is saved with the model (``model.save``: the mask packed as bits in the
    layer's config), so a reloaded model keeps its removed channels at zero
    while it trains.

    Args:
        mask: A non-trainable ``tf.Variable`` of the variable's shape (or an
            array, made into one).
        inner: A constraint the variable had before, applied first.
    """

    def __init__(self, mask, inner=None):
        if not isinstance(mask, tf.Variable):
            mask = tf.Variable(np.asarray(mask, np.float32), trainable=False)
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        """Returns ``inner(w) * mask``."""
        if self.inner is not None:
            w = self.inner(w)
        return w * tf.cast(self.mask, w.dtype)

    def get_config(self) -> dict:
        """The mask as base64 bits plus its shape, and the inner constraint."""
        kept = np.asarray(self.mask.numpy()) != 0
        return {"shape": list(kept.shape),
                "bits": base64.b64encode(np.packbits(kept.ravel())).decode("ascii"),
                "inner": None if self.inner is None else keras.constraints.serialize(self.inner)}

    @classmethod
    def from_config(cls, config: dict) -> MaskConstraint:
        """Rebuilds the constraint saved by ``get_config``."""
        shape = tuple(config["shape"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(config["bits"]), np.uint8))
        mask = bits[:int(np.prod(shape))].reshape(shape).astype(np.float32)
        inner = config.get("inner")
        return cls(mask, keras.constraints.deserialize(inner) if inner else None)


@keras.saving.register_keras_serializable(package="tfprune")
class KeptChannelsLayerNormalization(keras.layers.LayerNormalization):
    """A LayerNormalization over the kept channels of a wider, zero-padded stream.

    ``slim`` puts it where a ``keras.layers.LayerNormalization`` lost channels of
    its input (the hidden width of a transformer). In the masked model the
    removed channels are zero and the layer's mean and variance still run over
    all ``full_width`` of them; this layer computes the same statistics from
    the kept channels alone:

    ``mean = sum(x) / D`` and
    ``variance = (sum((x - mean)^2) + (D - k) * mean^2) / D``,

    with ``k`` kept channels of ``D = full_width``. So the slimmed model
    computes what the masked one does; a plain LayerNormalization over ``k``
    channels would not (its mean divides by ``k``). The last axis only, and
    not ``rms_scaling``.

    Args:
        full_width: ``D``, the channel count of the original layer.
        **kwargs: ``keras.layers.LayerNormalization``'s arguments.
    """

    def __init__(self, full_width: int, **kwargs):
        super().__init__(**kwargs)
        if self.rms_scaling:
            raise ValueError("KeptChannelsLayerNormalization does not take rms_scaling.")
        self.full_width = int(full_width)

    def call(self, inputs):
        """Normalizes over the last axis as a LayerNormalization of ``full_width`` would."""
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        width = float(self.full_width)
        missing = width - x.shape[-1]
        mean = ops.sum(x, axis=-1, keepdims=True) / width
        centred = x - mean
        variance = (ops.sum(ops.square(centred), axis=-1, keepdims=True)
                    + missing * ops.square(mean)) / width
        outputs = centred * ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs = outputs * ops.cast(self.gamma, outputs.dtype)
        if self.beta is not None:
            outputs = outputs + ops.cast(self.beta, outputs.dtype)
        return ops.cast(outputs, self.compute_dtype)

    def get_config(self) -> dict:
        """LayerNormalization's config and ``full_width``."""
        return {**super().get_config(), "full_width": self.full_width}


@keras.saving.register_keras_serializable(package="tfprune")
class InputSizedReshape(keras.layers.Layer):
    """``keras.ops.reshape`` whose None entries take sizes of the input's axes.

    A composite layer's ``call`` often reshapes with sizes it reads from its
    input (``batch, length, _ = ops.shape(x)``; ``ops.reshape(x, (batch,
    length, -1))``). Traced symbolically, those sizes are None, and the traced
    op's shape ``(None, None, -1)`` cannot run. ``slim`` replays such an op as
    this layer: the k-th None is, at run time, the input's size on axis
    ``input_axes[k]`` (the input's k-th axis of unknown size when traced).

    Args:
        newshape: The traced shape, None where a size was read from the input.
        input_axes: For each None of ``newshape``, the input axis it is read from.
        **kwargs: ``keras.layers.Layer``'s arguments (name, dtype).
    """

    def __init__(self, newshape, input_axes, **kwargs):
        super().__init__(**kwargs)
        self.newshape = tuple(None if size is None else int(size) for size in newshape)
        self.input_axes = tuple(int(axis) for axis in input_axes)
        if len(self.input_axes) != self.newshape.count(None):
            raise ValueError(f"InputSizedReshape: {len(self.input_axes)} input axes for "
                             f"{self.newshape.count(None)} None entries of {self.newshape}.")

    def _target(self, sizes) -> list:
        axes = iter(self.input_axes)
        return [sizes[next(axes)] if size is None else size for size in self.newshape]

    def call(self, inputs):
        """Reshapes ``inputs``, None entries read from its shape."""
        return ops.reshape(inputs, self._target(ops.shape(inputs)))

    def compute_output_shape(self, input_shape):
        """The input's sizes for None entries; -1 solved when every size is known."""
        shape = self._target(tuple(input_shape))
        if -1 in shape:
            named = [size for size in shape if size != -1]
            known = None not in input_shape and None not in named
            shape[shape.index(-1)] = (int(np.prod(input_shape)) // int(np.prod(named))
                                      if known else None)
        return tuple(shape)

    def get_config(self) -> dict:
        """The layer's config, ``newshape`` and ``input_axes``."""
        return {**super().get_config(), "newshape": list(self.newshape),
                "input_axes": list(self.input_axes)}


@keras.saving.register_keras_serializable(package="tfprune")
class TensorOutputs(keras.layers.Layer):
    """A layer whose call returns some Nones (an absent cache), returning its tensors only.

    keras-hub's T5 attention returns ``(output, position_bias, None)``; its
    block never saves it as a node of a functional model, but a flat slim
    does, and Keras could not load such a node again. ``slim`` calls it
    through this wrapper, whose outputs are the inner call's tensors, flat.

    Args:
        layer: The wrapped layer (or its serialization).
        **kwargs: ``keras.layers.Layer``'s arguments (name).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = (layer if isinstance(layer, keras.layers.Layer)
                      else keras.saving.deserialize_keras_object(layer))

    def call(self, *args, **kwargs):
        """The inner layer's outputs without the Nones."""
        return [tensor for tensor in keras.tree.flatten(self.layer(*args, **kwargs))
                if tensor is not None]

    def get_config(self) -> dict:
        """The layer's name and the inner layer's serialization."""
        return {**super().get_config(), "layer": _serialized_layer(self.layer)}


class UnsavableModelError(StorageError, NotImplementedError):
    """A model that would save into a file it could not be loaded from (the message says why)."""


@keras.saving.register_keras_serializable(package="tfprune")
class SlimmedComposite:
    """A composite layer of its own class whose sublayers ``slim`` replaced, saved as such.

    ``slim`` rebuilds a composite layer whose call reads its inputs' sizes
    (keras-hub's decoder blocks) as a new instance of its class, with slimmed
    sublayers in some of its attributes (``tfprune.slimming.composites``). Saved
    as that class, it would load with the full-size sublayers its config
    builds, which the saved weights do not fit. So its class is
    ``slimmed_class(composite class)``, a subclass of this mixin and of the
    composite's class: it computes as the composite, and is saved as the
    composite's config plus the configs of the replaced sublayers, which
    replace the full-size ones again when it loads.

    Attributes:
        slimmed_attributes: The names of the attributes holding replaced sublayers.
    """

    slimmed_attributes: tuple = ()

    def get_config(self) -> dict:
        """The composite's class and config, and each replaced sublayer's serialization."""
        composite_type = type(self).__mro__[2]  # (slimmed class, SlimmedComposite, composite)
        try:
            config = completed_config(self, super().get_config())
        except (NotImplementedError, AttributeError):  # missing or broken (keras-hub 0.32)
            config = constructor_config(self)
        missing = missing_arguments(composite_type, config)
        if missing:  # saved, it would not load: say so now
            raise UnsavableModelError(
                f"{self.name!r}: the slimmed model cannot be saved. Its {composite_type.__name__} "
                f"was rebuilt around slimmed sublayers, and its config lacks the arguments "
                f"{', '.join(missing)} (nor are they attributes of the same names), so it "
                "could not be built again when loading. Keep the slimmed model in memory, or "
                "slim with a plan its model's own class can take (make_plan(..., "
                "uniform=True)).")
        return {"composite": {"module": composite_type.__module__,
                              "class_name": composite_type.__name__,
                              "registered_name": keras.saving.get_registered_name(
                                  composite_type),
                              "config": keras.saving.serialize_keras_object(config)},
                "sublayers": {name: _serialized_layer(getattr(self, name))
                              for name in self.slimmed_attributes}}

    @classmethod
    def from_config(cls, config: dict):
        """The composite built from its config; its saved sublayers go in when it is built.

        (Given the composite's own config, as ``slim`` does, the composite's
        ``from_config``.)
        """
        if set(config) != {"composite", "sublayers"}:
            return super().from_config(config)
        composite_type = _composite_class(config["composite"])
        layer_type = slimmed_class(composite_type)
        inner = config["composite"]["config"]
        try:
            layer = super(SlimmedComposite, layer_type).from_config(inner)
        except TypeError:  # a config its own constructor refuses keys of (keras-hub 0.32)
            layer = super(SlimmedComposite, layer_type).from_config(
                taken_keys(composite_type, inner))
        layer.slimmed_attributes = tuple(config["sublayers"])
        layer._saved_sublayers = config["sublayers"]
        if composite_type.build is keras.layers.Layer.build:  # nothing of its own to build
            layer._install_saved_sublayers()
        return layer

    def build_from_config(self, config):
        """Builds the composite as it was saved, then puts the saved sublayers in."""
        try:
            super().build_from_config(config)
        except (ValueError, TypeError, AttributeError):
            if getattr(self, "_saved_sublayers", None) is None:
                raise  # while slimming: tfprune.slimming.composites leaves it unbuilt
        self._install_saved_sublayers()

    def _install_saved_sublayers(self) -> None:
        saved = self.__dict__.pop("_saved_sublayers", None)
        if saved is None:
            return
        replace_sublayers(self, {name: keras.saving.deserialize_keras_object(value)
                                 for name, value in saved.items()})
        self.built = True


def _serialized_layer(layer) -> dict:
    """Keras' serialized form of ``layer``, its config as ``layer_config`` reads it.

    keras-hub builds some sublayers from arguments its ``get_config`` leaves
    out, or Keras cannot serialize by itself (Mixtral's ``MixtralMoeExperts``
    and ``MixtralSparseMoeBlock``): their missing arguments are read back
    from the attributes named like them.
    """
    layer_type = type(layer)
    config = layer.get_config() if isinstance(layer, SlimmedComposite) else layer_config(layer)
    serialized = {"module": layer_type.__module__, "class_name": layer_type.__name__,
                  "registered_name": keras.saving.get_registered_name(layer_type),
                  "config": keras.saving.serialize_keras_object(config)}
    build_config = layer.get_build_config()
    return {**serialized, "build_config": build_config} if build_config else serialized


#: Composite class -> its ``SlimmedComposite`` subclass.
_SLIMMED_CLASSES: dict[type, type] = {}


def slimmed_class(composite_type: type) -> type:
    """The subclass of ``SlimmedComposite`` and ``composite_type`` slim builds (one per class).

    It is saved under the name ``tfprune>SlimmedComposite``, which loads it
    through ``SlimmedComposite.from_config`` whatever the composite's class.
    """
    found = _SLIMMED_CLASSES.get(composite_type)
    if found is None:
        found = _SLIMMED_CLASSES[composite_type] = type(
            composite_type.__name__, (SlimmedComposite, composite_type),
            {"__module__": __name__, "__doc__": composite_type.__doc__})
        register = keras.saving.register_keras_serializable("tfprune", "SlimmedComposite")
        register(found)  # saved under the mixin's name ...
        register(SlimmedComposite)  # ... which still loads through the mixin
    return found


def _composite_class(entry: dict) -> type:
    """The composite's class, as Keras finds classes: registered, or from keras / keras-hub."""
    found = keras.saving.get_registered_object(entry["registered_name"])
    module = entry["module"]
    if found is None and module.split(".")[0] in ("keras", "keras_hub"):
        found = getattr(importlib.import_module(module), entry["class_name"], None)
    if not isinstance(found, type):
        raise TypeError(f"Could not locate class '{entry['class_name']}' (module {module}) of "
                        "a slimmed composite layer: import the module that registers it.")
    return found


def replace_sublayers(layer: keras.layers.Layer, replacements: dict[str, object]) -> None:
    """Sets ``layer``'s attributes to other sublayers; the ones they held leave its tracking.

    So do the layers inside them that the layer tracks directly too (a list of
    layers it wrapped in a Sequential, as ViTDet's MLP does), unless a new
    sublayer holds them. Works on a built layer too (Keras locks its state
    once built).
    """
    tracker = getattr(layer, "_tracker", None)
    locked = bool(tracker and tracker.locked)
    if locked:
        tracker.unlock()
    old = [getattr(layer, name, None) for name in replacements]
    for name, sublayer in replacements.items():
        setattr(layer, name, sublayer)
    if locked:
        tracker.lock()
    tracked = getattr(layer, "_layers", None)
    if isinstance(tracked, list):
        kept = {id(inner) for new in replacements.values() if isinstance(new, keras.layers.Layer)
                for inner in new._flatten_layers(include_self=True, recursive=True)}
        gone = {id(inner) for sub in old if isinstance(sub, keras.layers.Layer)
                for inner in sub._flatten_layers(include_self=True, recursive=True)} - kept
        tracked[:] = [sub for sub in tracked if id(sub) not in gone]
