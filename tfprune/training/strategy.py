"""``run.strategy``: the ``tf.distribute`` strategy a run trains, scores and prunes under.

One registry maps each name to a factory:

- ``default``: the strategy already in scope. For the CLI that is TensorFlow's
  default (one device); from Python, a ``strategy.scope()`` of your own is
  kept, so ``tfprune.training.train`` called inside it uses your strategy.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over ``run.devices`` (all
  GPUs, or the CPU, when null). Naming more CPU devices than the machine has
  (``["/cpu:0", "/cpu:1"]``) splits its CPU into logical devices, which must
  happen before TensorFlow starts any work.
- ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` from the
  ``TF_CONFIG`` environment variable.
- ``tpu``: ``tf.distribute.TPUStrategy`` on the TPU named by ``run.tpu``
  (``""`` finds the local one); the code path exists but cannot be tested
  without a TPU.

A process creates each strategy once and reuses it (TensorFlow allows one
multi-worker strategy per process).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfprune.config import ConfigError

_CREATED: dict[tuple, tf.distribute.Strategy] = {}


def _default(run: dict) -> tf.distribute.Strategy:
    return tf.distribute.get_strategy()


def _mirrored(run: dict) -> tf.distribute.Strategy:
    devices = run.get("devices")
    if devices:
        _split_cpu_if_asked(devices)
    return tf.distribute.MirroredStrategy(devices=devices or None)


def _multi_worker(run: dict) -> tf.distribute.Strategy:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ConfigError("run.strategy: multi_worker reads the cluster from the TF_CONFIG "
                          "environment variable, which is not set (see the distributed "
                          "guide for an example).")
    try:
        cluster = json.loads(raw)
        valid = isinstance(cluster["cluster"]["worker"], list) and \
            isinstance(cluster["task"]["index"], int)
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ConfigError(f"TF_CONFIG is not a cluster description: {raw[:200]!r}; it needs "
                          '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                          '"worker", "index": I}}.')
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu(run: dict) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=run.get("tpu") or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ConfigError(f"run.strategy: tpu: no TPU found ({error}).") from None
    return tf.distribute.TPUStrategy(resolver)


#: ``run.strategy`` -> a factory of the strategy from the config's ``run`` section.
STRATEGIES = {"default": _default, "mirrored": _mirrored, "multi_worker": _multi_worker,
              "tpu": _tpu}


def strategy_for(config: dict) -> tf.distribute.Strategy:
    """The strategy ``config["run"]`` asks for, created once per process.

    Raises:
        ConfigError: For an unknown name, a missing ``TF_CONFIG`` or devices
            that cannot be made.
    """
    run = config["run"]
    name = run.get("strategy", "default")
    if name not in STRATEGIES:
        raise ConfigError(f"run.strategy: unknown {name!r}; valid: {sorted(STRATEGIES)}.")
    if name == "default":
        return _default(run)
    key = (name, tuple(run.get("devices") or ()), run.get("tpu"))
    if tf.distribute.has_strategy():
        if _CREATED.get(key) is tf.distribute.get_strategy():
            return _CREATED[key]
        raise ConfigError(f"run.strategy: {name} was asked for inside a strategy scope of your "
                          "own; inside it, leave run.strategy as default (your strategy is "
                          "used).")
    if key not in _CREATED:
        _CREATED[key] = STRATEGIES[name](run)
    return _CREATED[key]


def refuse_multi_worker(config: dict, where: str, instead: str) -> None:
    """Refuses ``run.strategy: multi_worker`` for a command whose processes each pick runs.

    The workers of one cluster must train the same run in step; grid processes
    and keras-tuner workers each take runs of their own.

    Args:
        config: A validated config.
        where: What the message starts with (a config file, a command).
        instead: How to share the work out instead.

    Raises:
        ConfigError: When ``run.strategy`` is ``multi_worker``.
    """
    if config["run"].get("strategy") == "multi_worker":
        raise ConfigError(
            f"{where}: run.strategy: multi_worker: the workers of one cluster must train the "
            f"same run in step, while these processes each take runs of their own. {instead} "
            "Train one run on several workers with tfprune prune / train.")


def _split_cpu_if_asked(devices: list[str]) -> None:
    """Makes logical CPU devices when ``devices`` names more CPUs than exist."""
    wanted = {int(name.rsplit(":", 1)[1]) for name in devices
              if name.lower().lstrip("/").startswith(("cpu:", "device:cpu:"))}
    if not wanted:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    present = tf.config.get_logical_device_configuration(cpu) or [None]
    if max(wanted) < len(present):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * (max(wanted) + 1))
    except RuntimeError:
        raise ConfigError(
            f"run.devices: {devices} names {max(wanted) + 1} CPU devices, but TensorFlow has "
            f"already started with {len(present)}; logical CPU devices can only be made before "
            "TensorFlow runs anything (name them in the config of a fresh process).") from None
