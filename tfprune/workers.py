"""Several workers, one result: who this process is, and sums and gathers across workers.

Under ``tf.distribute.MultiWorkerMirroredStrategy`` every worker runs the same
program on its own share of the data. Whatever tfprune computes outside
Keras' own training step (scores, BatchNorm statistics for scoring, the plan)
must come out the same on every worker, or the models drift apart silently.
Each worker sums its part locally; ``sum_across_workers`` then adds the parts
with the strategy's collective all-reduce, so every worker holds the sum over
the union of the data. ``require_same_plan`` compares a plan's checksum on
every worker before its masks are applied.

With one worker (no strategy, ``MirroredStrategy`` on one machine) every
function here returns at once, without a collective: the process already
holds all of its data.

Each function takes the strategy to use; by default, the one in scope
(``strategy.scope()``), else TensorFlow's default. Keras does not enter a
model's strategy while ``fit`` calls callbacks, so tfprune's scoring, masks
and BatchNorm averaging pass ``model_strategy(model)``: the strategy in scope,
else the one the model was made under.

Example:
    >>> total, count = sum_across_workers([local_total, tf.constant(local_count, tf.float64)])
    >>> mean = total / count  # the same on every worker
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class WorkersDisagreeError(RuntimeError):
    """Workers computed different plans; applying them would make the models diverge."""


def _strategy(strategy=None) -> tf.distribute.Strategy:
    return strategy or tf.distribute.get_strategy()


def worker_count(strategy=None) -> int:
    """Workers (processes) in ``strategy``'s cluster; 1 for any single-process strategy."""
    resolver = getattr(_strategy(strategy), "cluster_resolver", None)
    if resolver is None or not isinstance(_strategy(strategy),
                                          tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in ("chief", "worker") if job in spec.jobs) or 1


def worker_index(strategy=None) -> int:
    """This worker's position among ``worker_count`` (0 for one process; the chief is 0)."""
    if worker_count(strategy) == 1:
        return 0
    resolver = _strategy(strategy).cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().jobs
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + (1 if has_chief else 0)


def is_chief(strategy=None) -> bool:
    """Whether this process writes the run's files (always, for one process)."""
    return worker_count(strategy) == 1 or bool(_strategy(strategy).extended.should_checkpoint)


def local_replicas(strategy=None) -> int:
    """Replicas (devices) of this process: 2 for ``MirroredStrategy`` over 2 GPUs."""
    try:
        return len(_strategy(strategy).extended.worker_devices) or 1
    except (RuntimeError, NotImplementedError, AttributeError):  # the default strategy
        return 1


def _all_reduce_fn(strategy):
    """A traced all-reduce (sum) of one float64 vector, made once per strategy."""
    local = local_replicas(strategy)

    def reduce(flat):
        def replica(value):
            context = tf.distribute.get_replica_context()
            value = tf.identity(value)  # on the replica's device: a traced argument has none
            if local > 1:  # every local replica holds the worker's value: count it once
                first = tf.math.floormod(context.replica_id_in_sync_group, local) == 0
                value = value * tf.cast(first, value.dtype)
            return context.all_reduce(tf.distribute.ReduceOp.SUM, value)

        return strategy.experimental_local_results(strategy.run(replica, args=(flat,)))[0]

    return tf.function(reduce, input_signature=[tf.TensorSpec([None], tf.float64)])


def _all_gather_fn(strategy):
    """A traced all-gather of one float64 scalar per worker, made once per strategy."""
    local = local_replicas(strategy)

    def gather(value):
        def replica(value):
            value = tf.identity(value)[None]  # on the replica's device (see above)
            return tf.distribute.get_replica_context().all_gather(value, axis=0)

        everyone = strategy.experimental_local_results(strategy.run(replica, args=(value,)))[0]
        return everyone[::local]  # one per worker (its first local replica)

    return tf.function(gather, input_signature=[tf.TensorSpec([], tf.float64)])


_FUNCTIONS: dict[tuple[int, str], object] = {}


def _function(strategy, kind: str):
    key = (id(strategy), kind)
    if key not in _FUNCTIONS:
        _FUNCTIONS[key] = (_all_reduce_fn if kind == "sum" else _all_gather_fn)(strategy)
    return _FUNCTIONS[key]


def sum_across_workers(values: list, strategy=None) -> list:
    """Each value summed over every worker (in float64); unchanged with one worker.

    Every worker must call this at the same point with values of the same
    shapes: it waits for the others.

    Args:
        values: Tensors or arrays (any float or int dtype, any shapes).
        strategy: Default: the strategy in scope.

    Returns:
        The sums, in the values' own dtypes and shapes.
    """
    strategy = _strategy(strategy)
    if worker_count(strategy) == 1:
        return list(values)
    tensors = [tf.convert_to_tensor(v) for v in values]
    flat = tf.concat([tf.reshape(tf.cast(t, tf.float64), [-1]) for t in tensors], axis=0)
    summed = _function(strategy, "sum")(flat)
    sizes = [int(np.prod(t.shape)) for t in tensors]
    parts = tf.split(summed, sizes) if tensors else []
    return [tf.cast(tf.reshape(part, t.shape), t.dtype)
            for part, t in zip(parts, tensors, strict=True)]


def gather_across_workers(value: float, strategy=None) -> list[float]:
    """One float64 scalar from each worker, in worker order; ``[value]`` with one worker."""
    strategy = _strategy(strategy)
    if worker_count(strategy) == 1:
        return [float(value)]
    return [float(v) for v in _function(strategy, "gather")(tf.constant(value, tf.float64))]


def require_same_plan(plan, strategy=None) -> None:
    """Stops when another worker made a different plan, naming both checksums.

    A plan's checksum is 12 hex digits (48 bits), gathered exactly as float64.

    Raises:
        WorkersDisagreeError: When any worker's plan checksum differs from this one's.
    """
    strategy = _strategy(strategy)
    if worker_count(strategy) == 1:
        return
    mine = plan.checksum()
    everyone = [f"{int(v):012x}" for v in gather_across_workers(float(int(mine, 16)), strategy)]
    if len(set(everyone)) > 1:
        listed = ", ".join(f"worker {i}: {c}" for i, c in enumerate(everyone))
        raise WorkersDisagreeError(
            f"the workers made different pruning plans ({listed}); this is worker "
            f"{worker_index(strategy)} ({mine}). Applying them would make the replicas "
            "diverge silently. Scores are summed across workers, so this points to "
            "differing data, weights or code between the workers.")


def model_strategy(model) -> tf.distribute.Strategy:
    """The strategy in scope, else the one ``model`` was created under."""
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    return getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
