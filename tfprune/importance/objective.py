"""``ScoringObjective``: the loss gradient measures differentiate, taken from the model.

Gradient measures (g, Hg) need a scalar loss of the model's outputs. Which one:

1. ``loss`` passed by the user (a Keras loss name, object or function, or a
   list / dict of them, one per output), else
2. the loss the model was compiled with (all outputs, ``loss_weights``), else
3. for an uncompiled model with one output, the paper's: sparse categorical
   cross-entropy on the logits (binary cross-entropy if the output ends in a
   sigmoid). An uncompiled model whose loss cannot be guessed (several
   outputs, one linear unit) is refused.

Cross-entropies (the registry ``CROSS_ENTROPIES``) are taken on the logits
divided by the measure's temperature: a final softmax / sigmoid is looked
through (``tfprune.importance.logits``), so the scores equal those of the same
weights without it, and the cross-entropy runs ``from_logits`` with the
loss's own options (label smoothing, ``ignore_class``, focal ``gamma``...).
Any other loss (MSE, Huber, a custom function) runs on the outputs as they
are; a temperature other than 1 does not apply to it and is reported once.
Sample weights and masks are applied as Keras does (``sum_over_batch_size``):
padding that the model masks (``Embedding(mask_zero=True)``, ``Masking``) and
targets equal to a sparse cross-entropy's ``ignore_class`` count for nothing.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfprune.importance.logits import logits_function, output_activations
from tfprune.importance.scores import ScoringError
from tfprune.losses import TemperatureCrossEntropy


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
    """A cross-entropy family the scoring takes on logits / temperature.

    Attributes:
        function: The Keras loss function, called with ``from_logits=True``.
        labels: ``"sparse"`` (class ids), ``"dense"`` (one-hot or soft rows) or
            ``"binary"`` (one target per unit).
        options: The loss' config keys passed on to ``function``.
    """

    function: Callable
    labels: str
    options: tuple[str, ...] = ()


#: Loss classes and functions scored as cross-entropies on logits, looked up along the MRO.
CROSS_ENTROPIES: dict = {}


def register_cross_entropy(key, kind: CrossEntropy) -> None:
    """Registers a loss class or function as a cross-entropy scored on logits / temperature."""
    CROSS_ENTROPIES[key] = kind


_SPARSE = CrossEntropy(keras.losses.sparse_categorical_crossentropy, "sparse",
                       ("ignore_class", "axis"))
_DENSE = CrossEntropy(keras.losses.categorical_crossentropy, "dense", ("label_smoothing", "axis"))
_BINARY = CrossEntropy(keras.losses.binary_crossentropy, "binary", ("label_smoothing", "axis"))
_DENSE_FOCAL = CrossEntropy(keras.losses.categorical_focal_crossentropy, "dense",
                            ("alpha", "gamma", "label_smoothing", "axis"))
_BINARY_FOCAL = CrossEntropy(keras.losses.binary_focal_crossentropy, "binary",
                             ("apply_class_balancing", "alpha", "gamma", "label_smoothing", "axis"))
for _key, _kind in (
    (keras.losses.SparseCategoricalCrossentropy, _SPARSE),
    (keras.losses.sparse_categorical_crossentropy, _SPARSE),
    (TemperatureCrossEntropy, _SPARSE),
    (keras.losses.CategoricalCrossentropy, _DENSE),
    (keras.losses.categorical_crossentropy, _DENSE),
    (keras.losses.BinaryCrossentropy, _BINARY),
    (keras.losses.binary_crossentropy, _BINARY),
    (keras.losses.CategoricalFocalCrossentropy, _DENSE_FOCAL),
    (keras.losses.categorical_focal_crossentropy, _DENSE_FOCAL),
    (keras.losses.BinaryFocalCrossentropy, _BINARY_FOCAL),
    (keras.losses.binary_focal_crossentropy, _BINARY_FOCAL),
):
    register_cross_entropy(_key, _kind)


#: The losses of uncompiled models (one object each, so estimators can be reused).
_DEFAULT_SPARSE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
_DEFAULT_BINARY = keras.losses.BinaryCrossentropy(from_logits=True)


def _cross_entropy_of(loss) -> CrossEntropy | None:
    if callable(loss) and not isinstance(loss, keras.losses.Loss):
        return CROSS_ENTROPIES.get(loss)
    for cls in type(loss).__mro__:
        if cls in CROSS_ENTROPIES:
            return CROSS_ENTROPIES[cls]
    return None


def _loss_name(loss) -> str:
    return getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__


def _from_logits(loss) -> bool:
    """Whether a Keras cross-entropy object is told its inputs are logits."""
    if isinstance(loss, TemperatureCrossEntropy):
        return True
    return bool(_config(loss).get("from_logits", False))


def _config(loss) -> dict:
    return loss.get_config() if isinstance(loss, keras.losses.Loss) else {}


@dataclasses.dataclass
class OutputLoss:
    """The loss term of one model output.

    Attributes:
        name: The output's name (its dict key, else its layer's name).
        loss: The resolved Keras loss object or function.
        weight: Its loss weight.
        cross_entropy: The cross-entropy family, or None for any other loss.
        on_logits: True when the term takes the output's logits / temperature.
        units: The output's last dimension.
        per_example: True when the output has one prediction per example
            (rank 2), False for dense predictions (per pixel, per token).
    """

    name: str
    loss: object
    weight: float
    cross_entropy: CrossEntropy | None
    on_logits: bool
    units: int
    per_example: bool = True

    @property
    def description(self) -> str:
        """How the term is computed, for the scores' metadata."""
        how = "on logits / T" if self.on_logits else "on the outputs"
        weight = "" if self.weight == 1 else f" x {self.weight:g}"
        options = ({} if self.cross_entropy is None else
                   {key: value for key, value in self.options().items()
                    if value not in (None, False, 0, -1) or key == "ignore_class"
                    and value is not None})
        settings = f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else ""
        return f"{self.name}: {_loss_name(self.loss)}{settings} {how}{weight}"

    def options(self) -> dict:
        """The cross-entropy's options taken from the loss' config."""
        config = _config(self.loss)
        return {key: config[key] for key in self.cross_entropy.options if key in config}

    @property
    def ignore_class(self) -> int | None:
        """The class id a sparse cross-entropy skips (``ignore_class``), or None."""
        if self.cross_entropy is None or self.cross_entropy.labels != "sparse":
            return None
        return self.options().get("ignore_class")

    def value(self, target, prediction, sample_weight, temperature):
        """The term's mean loss over the batch (Keras' ``sum_over_batch_size``).

        Masked entries are left out as Keras' losses leave them out: the mask
        the model puts on its output (a masked sequence's padding) and the one
        a cross-entropy puts on its values (``ignore_class``) weigh zero, and
        the mean is over the entries left.
        """
        mask = _keras_mask(prediction)
        sparse = self.cross_entropy is not None and self.cross_entropy.labels == "sparse"
        if (not sparse and target.shape.rank == prediction.shape.rank - 1
                and prediction.shape[-1] == 1):  # as Keras: (batch,) targets of (batch, 1)
            target = tf.expand_dims(target, -1)  # outputs; CTC's (batch, length) stay as given
        if self.cross_entropy is not None:
            if self.on_logits:
                prediction = prediction / tf.cast(temperature, prediction.dtype)
            values = self.cross_entropy.function(target, prediction, from_logits=self.on_logits,
                                                 **self.options())
            return _weighted_mean(values, sample_weight, _both(mask, _keras_mask(values)))
        if isinstance(self.loss, keras.losses.Loss):
            return self.loss(target, prediction, sample_weight=sample_weight)  # reads the mask
        values = self.loss(target, prediction)
        return _weighted_mean(values, sample_weight, _both(mask, _keras_mask(values)))


def _keras_mask(tensor):
    """The mask Keras attaches to a tensor (``_keras_mask``, set by masking layers), or None."""
    return getattr(tensor, "_keras_mask", None)


def _both(first, second):
    if first is None or second is None:
        return first if second is None else second
    return tf.logical_and(tf.cast(first, tf.bool), tf.cast(second, tf.bool))


def _weighted_mean(values, sample_weight, mask=None):
    """Keras' ``sum_over_batch_size``: the sum of the weighted values over the entries.

    Under a mask, valid entries weigh ``entries / valid`` and masked ones 0, so
    the mean is over the valid entries (``keras.losses.Loss`` does the same).
    """
    weight = None
    if mask is not None:
        mask = tf.cast(mask, values.dtype)
        valid = tf.reduce_sum(mask)
        weight = mask * tf.math.divide_no_nan(tf.cast(tf.size(mask), values.dtype), valid)
    if sample_weight is not None:
        sample_weight = tf.cast(sample_weight, values.dtype)
        while sample_weight.shape.rank > values.shape.rank and sample_weight.shape[-1] == 1:
            sample_weight = tf.squeeze(sample_weight, -1)
        while sample_weight.shape.rank < values.shape.rank:
            sample_weight = tf.expand_dims(sample_weight, -1)  # per example, per entry
        weight = sample_weight if weight is None else weight * sample_weight
    if weight is not None:
        values = values * weight
    return tf.reduce_mean(values)


def _one_hot(rows: np.ndarray) -> bool:
    """Whether every row holds one 1 and zeros elsewhere."""
    return bool(np.all((rows == 0) | (rows == 1)) and np.all(rows.sum(axis=-1) == 1))


def output_names(model: keras.Model) -> list[str]:
    """One name per entry of ``model.outputs``: the output dict's keys, else the layer names."""
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        return keras.tree.flatten({key: key for key in structure})
    return [tensor._keras_history.operation.name for tensor in model.outputs]


def _per_output(structure, names: list[str], what: str, default) -> list:
    """A loss or loss-weight structure as a list aligned with the outputs."""
    if structure is None:
        return [default] * len(names)
    if isinstance(structure, dict):
        unknown = sorted(set(structure) - set(names))
        if unknown:
            raise ScoringError(f"{what}: keys {unknown} name no output of the model; its "
                               f"outputs are {names}.")
        return [structure.get(name) for name in names]
    if isinstance(structure, list | tuple):
        if len(structure) != len(names):
            raise ScoringError(f"{what}: {len(structure)} entries for {len(names)} outputs "
                               f"{names}.")
        return list(structure)
    return [structure] * len(names)


def _overrides_training(model: keras.Model) -> bool:
    """Whether the model's class replaces Keras' ``train_step`` or ``compute_loss``."""
    return any(getattr(type(model), method) is not getattr(keras.Model, method)
               for method in ("train_step", "compute_loss"))


def _resolve(identifier, name: str):
    if identifier is None or isinstance(identifier, keras.losses.Loss) or (
            callable(identifier) and not isinstance(identifier, str)):
        return identifier
    try:
        return keras.losses.get(identifier)
    except (ValueError, TypeError) as error:
        raise ScoringError(f"loss of output {name!r}: {error}") from None


class ScoringObjective:
    """The scalar loss of a model's outputs that g and Hg are taken of.

    Args:
        model: A built Keras model.
        loss: None (the compiled loss, else the paper's cross-entropy), or a
            Keras loss (name, object, function), or a list / dict of them keyed
            like the model's outputs.
        loss_weights: With ``loss``: a float, list or dict of per-output weights.
        forward_model: The model the outputs are computed with, if not ``model``
            (its float32 copy, ``tfprune.precision.float32_model``): same
            architecture and names, ``model``'s compiled loss.

    Raises:
        ScoringError: If the loss cannot be determined, does not match the
            outputs, or is the default cross-entropy on a one-unit output.

    Example:
        >>> objective = ScoringObjective(model)          # model.compile(loss=...) decides
        >>> objective = ScoringObjective(model, loss="mse")
        >>> objective.description
        ['value: mean_squared_error on the outputs']
    """

    def __init__(self, model: keras.Model, loss=None, loss_weights=None,
                 forward_model: keras.Model | None = None):
        self.model = model
        self.names = output_names(model)
        compiled = getattr(model, "compiled", False)
        self.source = "given" if loss is not None else (
            "compiled" if compiled and model.loss is not None else "default")
        if self.source == "default" and compiled:
            raise ScoringError(
                f"model {model.name!r} is compiled without a loss: it trains on losses it "
                "adds itself (add_loss) or on its own train_step, which gradient measures "
                "cannot take, and a guessed cross-entropy would rank channels by a loss the "
                "model never trains on. Pass loss= (the loss to score with), or use a "
                "data-free measure (magnitude).")
        if compiled and _overrides_training(model):
            warnings.warn(
                f"model {model.name!r} overrides train_step or compute_loss: the scores take "
                f"the {'given' if loss is not None else 'compiled'} loss; pass loss= if it "
                "trains on another.", stacklevel=2)
        if self.source == "compiled":
            loss = model.loss
            loss_weights = model.get_compile_config().get("loss_weights")
        activations = output_activations(model)
        losses = self._losses(loss, activations)
        weights = _per_output(loss_weights, self.names, "loss_weights", 1.0)
        self.terms: list[OutputLoss] = []
        for name, output, activation, term_loss, weight in zip(
                self.names, model.outputs, activations, losses, weights, strict=True):
            if term_loss is None:
                continue
            kind = _cross_entropy_of(term_loss)
            on_logits = kind is not None and (activation is not None or _from_logits(term_loss))
            self.terms.append(OutputLoss(name, term_loss, float(1.0 if weight is None else weight),
                                         kind, on_logits, int(output.shape[-1] or 1),
                                         len(output.shape) == 2))
        if not self.terms:
            raise ScoringError(f"model {model.name!r}: the loss covers none of its outputs.")
        self._warned: set[str] = set()
        look_through = [any(t.name == name and t.on_logits and activation is not None
                            for t in self.terms)
                        for name, activation in zip(self.names, activations, strict=True)]
        self._forward = logits_function(forward_model or model, look_through)
        self._opaque = [t.name for t in self.terms if t.cross_entropy and not t.on_logits]
        #: Two objectives with the same key compute the same loss (estimators are reused).
        self.key = tuple((term.description, id(term.loss)) for term in self.terms)

    def _losses(self, loss, activations) -> list:
        if self.source == "default":
            return [self._default_loss(activations)]
        losses = _per_output(loss, self.names, "loss", None)
        return [_resolve(item, name) for item, name in zip(losses, self.names, strict=True)]

    def _default_loss(self, activations):
        model = self.model
        if len(model.outputs) != 1:
            raise ScoringError(
                f"model {model.name!r} has {len(model.outputs)} outputs and is not compiled: "
                "gradient measures need its loss. Compile the model (model.compile(loss=...)) "
                "or pass loss= (a Keras loss, or a list / dict with one per output).")
        activation = activations[0]
        if activation is not None and activation[0] == "sigmoid":
            return _DEFAULT_BINARY
        if int(model.outputs[0].shape[-1]) < 2:
            raise ScoringError(
                f"model {model.name!r} has one output unit and is not compiled: a class "
                "cross-entropy over one unit is constant, so the scores would be meaningless. "
                "Compile the model with its loss (e.g. binary cross-entropy, mean squared "
                "error) or pass loss=, or use a data-free measure (magnitude).")
        return _DEFAULT_SPARSE

    # -- what the scoring reads -----------------------------------------------------
    @property
    def description(self) -> list[str]:
        """One line per loss term, for the scores' metadata."""
        return [term.description for term in self.terms]

    @property
    def class_term(self) -> OutputLoss | None:
        """The first term with class labels, or None.

        A sparse or dense cross-entropy, or a binary one on one unit, with one
        prediction per example: its labels choose GraSP's class-balanced memory.
        Dense predictions (a segmenter's per-pixel classes) have no one class
        per example: their memory is drawn at random.
        """
        for term in self.terms:
            if term.cross_entropy is not None and term.per_example and (
                    term.cross_entropy.labels != "binary" or term.units == 1):
                return term
        return None

    @property
    def num_classes(self) -> int | None:
        """Classes of ``class_term`` (2 for a one-unit binary output), None without one."""
        term = self.class_term
        if term is None:
            return None
        return 2 if term.cross_entropy.labels == "binary" else term.units

    def class_ids(self, targets) -> np.ndarray:
        """The class id of each example from its (raw) targets, for the memory."""
        term = self.class_term
        values = np.asarray(self._target_list(targets)[self.names.index(term.name)])
        self._converted(term, values)  # targets that are no class ids fail here, named
        if term.cross_entropy.labels == "binary":
            return (values.reshape(len(values), -1)[:, 0] > 0.5).astype(np.int64)
        if values.ndim >= 2 and values.shape[-1] > 1:
            return values.argmax(axis=-1).reshape(len(values), -1)[:, 0].astype(np.int64)
        return values.reshape(len(values), -1)[:, 0].astype(np.int64)

    def _target_list(self, targets) -> list:
        """Targets as a list aligned with ``self.names``."""
        if isinstance(targets, dict):
            missing = [term.name for term in self.terms if term.name not in targets]
            if missing:
                raise ScoringError(f"data: targets have keys {sorted(targets)}, missing the "
                                   f"outputs {missing}.")
            return [targets.get(name) for name in self.names]
        if isinstance(targets, list | tuple):
            if len(targets) != len(self.names):
                raise ScoringError(f"data: {len(targets)} targets for {len(self.names)} "
                                   f"outputs {self.names}.")
            return list(targets)
        if len(self.names) != 1:
            raise ScoringError(f"data: one target array for {len(self.names)} outputs "
                               f"{self.names}; give a list or a dict keyed by output name.")
        return [targets]

    def prepare(self, targets, sample_weight=None) -> tuple[list, list]:
        """Targets and sample weights as per-term NumPy lists, converted for each loss.

        Class ids for a sparse cross-entropy (one-hot rows are converted), one-hot
        rows for a dense one; checked to fit the output.

        Raises:
            ScoringError: For targets a loss cannot take, naming the output.
        """
        values = self._target_list(targets)
        missing = [term.name for term in self.terms
                   if values[self.names.index(term.name)] is None]
        if missing:
            raise ScoringError(f"data: no targets for the outputs {missing} (y is None); "
                               "gradient measures need the targets of the model's loss.")
        weights = (self._target_list(sample_weight) if isinstance(sample_weight, dict | list)
                   else [sample_weight] * len(self.names))
        prepared, prepared_weights = [], []
        for term in self.terms:
            index = self.names.index(term.name)
            prepared.append(self._converted(term, np.asarray(values[index])))
            weight = weights[index]
            prepared_weights.append(None if weight is None else np.asarray(weight))
        return prepared, prepared_weights

    def _converted(self, term: OutputLoss, target: np.ndarray) -> np.ndarray:
        labels = term.cross_entropy.labels if term.cross_entropy else None
        if labels == "sparse":
            if target.ndim >= 2 and target.shape[-1] == term.units > 1 and _one_hot(target):
                target = target.argmax(axis=-1)
            if term.per_example and target.ndim == 2 and target.shape[-1] == 1:
                target = target[:, 0]  # (N, 1) ids, as keras.datasets give them: always (N,)
            return self._class_ids(term, target)
        if labels == "dense" and (target.ndim == 1 or target.shape[-1] == 1):
            ids = self._class_ids(term, target.reshape(len(target)))
            return np.eye(term.units, dtype=np.float32)[ids]
        return target

    def _class_ids(self, term: OutputLoss, target: np.ndarray) -> np.ndarray:
        ignored = term.ignore_class
        ids = target if ignored is None else target[target != ignored]  # e.g. 255 at borders
        if ids.size and not (np.all(np.isfinite(ids)) and np.all(ids == np.round(ids))
                             and ids.min() >= 0 and ids.max() < term.units):
            skipped = "" if ignored is None else f" (besides its ignore_class {ignored})"
            raise ScoringError(
                f"data: targets of output {term.name!r} are not class ids in [0, {term.units})"
                f"{skipped} (found values {np.unique(ids)[:5].tolist()}...), but its loss "
                f"{_loss_name(term.loss)} needs them. If the model is not a classifier, "
                "compile it with its loss (e.g. model.compile(loss='mse')) or pass loss=.")
        return target.astype(np.int64)

    def check_temperature(self, temperature: float) -> None:
        """Warns once per output when a temperature != 1 cannot apply to its loss."""
        if float(temperature) == 1.0:
            return
        for term in self.terms:
            if not term.on_logits and term.name not in self._warned:
                self._warned.add(term.name)
                why = ("its outputs are probabilities with no softmax / sigmoid to look through"
                       if term.cross_entropy else "it is not a cross-entropy")
                warnings.warn(
                    f"output {term.name!r}: temperature {temperature:g} is not applied to "
                    f"{_loss_name(term.loss)} ({why}); the loss is taken on the outputs as "
                    "they are.", stacklevel=3)

    def warn_opaque(self) -> None:
        """Warns once when a cross-entropy must run on probabilities (no logits found)."""
        for name in self._opaque:
            if name not in self._warned:
                self._warned.add(name)
                warnings.warn(
                    f"output {name!r} is compiled with a cross-entropy on probabilities, and "
                    "no final softmax / sigmoid was found to take the logits before it: the "
                    "scores use the probabilities as they are (from_logits=False).",
                    stacklevel=3)

    # -- inside the traced functions ------------------------------------------------------
    def forward(self, inputs, training: bool = False) -> list:
        """The model's outputs as a list, logits where a term takes logits."""
        return keras.tree.flatten(self._forward(inputs, training=training))

    def __call__(self, inputs, targets: list, sample_weights: list, temperature):
        """The weighted sum of the terms' mean losses on one batch, BN in inference mode."""
        outputs = self.forward(inputs, training=False)
        total = None
        for term, target, weight in zip(self.terms, targets, sample_weights, strict=True):
            prediction = outputs[self.names.index(term.name)]
            value = term.value(target, prediction, weight, temperature)
            value = tf.cast(value, prediction.dtype) * tf.cast(term.weight, prediction.dtype)
            total = value if total is None else total + tf.cast(value, total.dtype)
        return total

