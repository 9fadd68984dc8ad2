"""Mean gradients g and Hessian-gradient products Hg with nested ``tf.GradientTape``.

Never builds the Hessian: ``Hg = d/dtheta [ sum_i stop_gradient(g_i) * dL/dtheta_i ]``
costs about three gradient passes per batch (forward, backward, and the
backward of the backward). BatchNorm runs in inference mode. The loss is the
model's own (``tfprune.importance.objective``): the compiled or given loss,
else the paper's cross-entropy; cross-entropies are taken on
``logits / temperature``, looking through a final softmax or sigmoid.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfprune.importance.objective import ScoringObjective
from tfprune.workers import local_replicas, model_strategy, sum_across_workers, worker_count


def _dense(gradients, variables) -> list:
    """Gradients as dense tensors.

    An Embedding's sparse ``IndexedSlices`` are scattered; a variable the loss
    does not read (a backbone's untied output embedding) gets zeros, not None.
    """
    return [tf.zeros(v.shape, v.dtype) if g is None else
            tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
            for g, v in zip(gradients, variables, strict=True)]


class _TracedByRank:
    """``tf.function(fn, reduce_retracing=True)``, one per ranks of the tensor arguments.

    Batches of other sizes share a trace; arguments of another rank get their
    own. One trace for all would relax a target seen as ``(N,)`` and then as
    ``(N, 1)`` to a tensor of unknown rank, which Keras' losses cannot take.
    """

    def __init__(self, fn):
        self.fn = fn
        self.traced: dict[tuple, object] = {}

    def __call__(self, *args):
        key = tuple(None if x is None else len(x.shape) for x in keras.tree.flatten(args))
        if key not in self.traced:
            self.traced[key] = tf.function(self.fn, reduce_retracing=True)
            # Traced at once with the batch size open: a last smaller batch, or another
            # number of samples (a check before training, then the rounds), adds no trace.
            self.traced[key].get_concrete_function(*keras.tree.map_structure(_open_batch, args))
        return self.traced[key](*args)

    def experimental_get_tracing_count(self) -> int:
        """Traces made so far, over every rank signature (as ``tf.function`` counts them)."""
        return sum(fn.experimental_get_tracing_count() for fn in self.traced.values())


def _open_batch(value):
    """A ``TensorSpec`` of ``value`` with its first (batch) dimension left open."""
    if value is None:
        return None
    tensor = tf.convert_to_tensor(value)
    shape = tensor.shape
    return tf.TensorSpec([None, *shape[1:]] if shape.rank else [], tensor.dtype)


def _batch(batch) -> tuple:
    """``(inputs, targets)`` or ``(inputs, targets, sample_weight)`` as a triple."""
    if len(batch) == 2:
        return batch[0], batch[1], None
    return tuple(batch)


class GradientEstimator:
    """Computes g and Hg for a model's variables with functions traced once.

    The batch dimension is left open in the traced signatures and the
    temperature is a tensor argument, so every batch size and temperature
    (e.g. GraSP's 200 and 1) reuses one trace per function.

    Hg is returned only for ``hessian_variables`` (scoring needs it for the
    prunable kernels alone): its rows for the other variables, such as BatchNorm
    parameters, biases and the classifier, are never computed. g always covers
    every trainable variable, since Hg's rows sum over all of them.

    Args:
        model: A built Keras model.
        temperature: The default temperature: logits are divided by it in a
            cross-entropy loss.
        hessian_variables: The variables (among ``variables``) Hg is returned
            for, in this order; None (default): all of ``variables``.
        objective: The ``ScoringObjective`` (default: the model's own loss, see
            ``tfprune.importance.objective``).
        variables: The variables g is taken for and H spans; None (default):
            ``model.trainable_variables``. A frozen layer's kernels may be among
            them (TensorFlow differentiates them all the same).

    Example:
        >>> estimator = GradientEstimator(model, temperature=1.0)
        >>> g = estimator.mean_gradient(batches)
        >>> hg = estimator.hessian_gradient_product(g, batches)
    """

    def __init__(self, model: keras.Model, temperature: float = 1.0, hessian_variables=None,
                 objective: ScoringObjective | None = None, variables=None):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.model = model
        #: 1 shows a progress bar over the samples of each multi-batch pass.
        self.verbose = 0
        #: Replicas of this machine the last batch was split over (``MirroredStrategy``).
        self.replicas_used = 1
        self.temperature = float(temperature)
        self.variables = list(model.trainable_variables if variables is None else variables)
        self.hessian_variables = self._check_hessian_variables(hessian_variables)
        self.objective = objective or ScoringObjective(model)
        self._input_dtypes = [tensor.dtype for tensor in model.inputs]
        self._gradient_fn = _TracedByRank(self._batch_gradient)
        self._hvp_fn = _TracedByRank(self._batch_hessian_gradient)
        self._fused_fn = _TracedByRank(self._batch_gradient_and_hessian_gradient)

    def _check_hessian_variables(self, variables) -> list:
        if variables is None:
            return self.variables
        variables = list(variables)
        known = {id(v) for v in self.variables}
        strangers = [v.path for v in variables if id(v) not in known]
        if strangers or not variables:
            raise ValueError(
                f"hessian_variables must be a non-empty list of the variables g is taken "
                f"for (model {self.model.name!r}'s trainable ones by default); not among "
                f"them: {strangers}."
            )
        return variables

    def _batch_gradient(self, inputs, targets, weights, temperature):
        with tf.GradientTape() as tape:
            loss = self.objective(inputs, targets, weights, temperature)
        return _dense(tape.gradient(loss, self.variables), self.variables)

    def _batch_hessian_gradient(self, inputs, targets, weights, temperature, g):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self.objective(inputs, targets, weights, temperature)
            grads = _dense(inner.gradient(loss, self.variables), self.variables)
            pairs = zip(g, grads, strict=True)
            z = tf.add_n([tf.reduce_sum(tf.stop_gradient(gi) * grad) for gi, grad in pairs])
        return _dense(outer.gradient(z, self.hessian_variables), self.hessian_variables)

    def _batch_gradient_and_hessian_gradient(self, inputs, targets, weights, temperature):
        """One batch's g and Hg in one nested pass: Hg = d/dtheta (||g||^2 / 2)."""
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self.objective(inputs, targets, weights, temperature)
            grads = _dense(inner.gradient(loss, self.variables), self.variables)
            z = 0.5 * tf.add_n([tf.reduce_sum(grad * grad) for grad in grads])
        return grads, _dense(outer.gradient(z, self.hessian_variables), self.hessian_variables)

    def gradient_and_hessian_gradient(
        self, inputs, targets, sample_weight=None, temperature: float | None = None
    ) -> tuple[list[tf.Tensor], list[tf.Tensor]]:
        """``(g, Hg)`` of a single batch in one nested-tape pass.

        g has one tensor per trainable variable, Hg one per ``hessian_variables``.

        Since g is the gradient of this batch's loss, d/dtheta (g^T g / 2) = H g:
        one double-backward pass instead of a gradient pass plus a
        Hessian-gradient pass. Equals
        ``hessian_gradient_product(g, [(inputs, targets)])``.
        """
        t = self._temperature(temperature)
        return self._fused_fn(*self._tensors(inputs, targets, sample_weight), t)

    def _tensors(self, inputs, targets, sample_weight) -> tuple:
        """A batch as tensors: inputs in the model's input dtypes, targets per loss term."""
        flat = [tf.convert_to_tensor(x) for x in keras.tree.flatten(inputs)]
        if len(flat) == len(self._input_dtypes):  # floats in the model's float precision
            flat = [tf.cast(x, dtype) if x.dtype.is_floating and dtype.is_floating else x
                    for x, dtype in zip(flat, map(tf.as_dtype, self._input_dtypes), strict=True)]
        inputs = keras.tree.pack_sequence_as(inputs, flat)
        targets, weights = self.objective.prepare(targets, sample_weight)
        targets = [tf.convert_to_tensor(t) for t in targets]
        weights = [None if w is None else tf.convert_to_tensor(w) for w in weights]
        return inputs, targets, weights

    def _temperature(self, temperature: float | None) -> tf.Tensor:
        value = self.temperature if temperature is None else float(temperature)
        if value <= 0:
            raise ValueError(f"temperature must be > 0, got {value}.")
        self.objective.check_temperature(value)
        self.objective.warn_opaque()
        return tf.constant(value, tf.float64)

    def mean_gradient(self, batches, temperature: float | None = None) -> list[tf.Tensor]:
        """Returns g, the example-weighted mean gradient over the batches.

        Args:
            batches: An iterable of ``(inputs, targets)`` or
                ``(inputs, targets, sample_weight)`` batches.
            temperature: Overrides the estimator's temperature for this call.
        """
        t = self._temperature(temperature)
        return self._weighted_mean(batches, lambda *batch: self._gradient_fn(*batch, t),
                                   self.variables)

    def hessian_gradient_product(
        self, g, batches, temperature: float | None = None
    ) -> list[tf.Tensor]:
        """Returns H g averaged over batches (e.g. one class-balanced batch per class).

        One tensor per variable of ``hessian_variables``.

        Args:
            g: The vector to multiply, one tensor per trainable variable.
            batches: An iterable of ``(inputs, targets)`` or
                ``(inputs, targets, sample_weight)`` batches.
            temperature: Overrides the estimator's temperature for this call.
        """
        g = [tf.cast(gi, v.dtype) for gi, v in zip(g, self.variables, strict=True)]
        t = self._temperature(temperature)
        return self._weighted_mean(batches, lambda *batch: self._hvp_fn(*batch, t, g),
                                   self.hessian_variables)

    def _weighted_mean(self, batches, fn, variables) -> list[tf.Tensor]:
        """The example-weighted mean of ``fn`` over the batches (of every worker's batches).

        Under a multi-worker strategy, each worker's sums and example count are
        added across workers (``tfprune.workers``): every worker returns the
        mean over the union of their batches.
        """
        total, count = None, 0
        batches = list(batches)
        bar = None
        if self.verbose and len(batches) > 1:
            bar = keras.utils.Progbar(sum(int(keras.tree.flatten(_batch(b)[0])[0].shape[0])
                                          for b in batches), unit_name="sample")
        strategy = model_strategy(self.objective.model)  # the given model, not a float32 copy
        for batch in batches:
            inputs, targets, weights = _batch(batch)
            size = int(keras.tree.flatten(inputs)[0].shape[0])
            scaled = self._summed(fn, self._tensors(inputs, targets, weights), size, strategy)
            total = scaled if total is None else [t + s for t, s in zip(total, scaled, strict=True)]
            count += size
            if bar is not None:
                bar.add(size)
        if worker_count(strategy) > 1:
            total = total or [tf.zeros(v.shape, v.dtype) for v in variables]
            *total, count = sum_across_workers([*total, tf.constant(count, tf.float64)],
                                               strategy)
            count = int(count)
        if not count:
            raise ValueError("no batches to estimate from.")
        return [t / count for t in total]

    def _summed(self, fn, tensors: tuple, size: int, strategy) -> list[tf.Tensor]:
        """``fn``'s values on one batch times its size: sums over its examples.

        On one machine with several replicas (``MirroredStrategy``), the rows
        are split over the replicas (every r-th row to each), each replica sums
        over its own, and the strategy adds them: data-parallel, as ``fit`` is.
        ``replicas_used`` records how many took part.
        """
        replicas = local_replicas(strategy)
        if replicas == 1 or worker_count(strategy) > 1 or size < replicas:
            self.replicas_used = 1
            return [v * size for v in fn(*tensors)]
        self.replicas_used = replicas

        def rows(context):
            index = context.replica_id_in_sync_group
            return keras.tree.map_structure(
                lambda t: None if t is None else t[index::replicas], tensors)

        def replica(*part):
            rows_here = tf.shape(keras.tree.flatten(part[0])[0])[0]
            return [v * tf.cast(rows_here, v.dtype) for v in fn(*part)]

        parts = strategy.experimental_distribute_values_from_function(rows)
        per_replica = strategy.run(replica, args=parts)
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]
