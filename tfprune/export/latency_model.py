"""The per-layer latency table latency-aware ranking plans with, measured in LiteRT.

``measure_latency_table(model)`` times every kernel layer call (convolutions,
dense layers) alone, as a one-layer model exported to float .tflite and run
in the LiteRT interpreter at batch 1 with ``threads`` threads, at a few input
and output channel counts (``fractions`` of the dense counts, rounded to
multiples of ``round_to``); ``tfprune.pruning.latency_cost.KeepLatency``
interpolates between them. A layer whose output channels follow its input's
(a depthwise convolution) is timed on the diagonal only. The whole dense
model is timed too: what the layers alone do not account for is a constant.

Each measurement is cached on disk, keyed by the layer's class and config,
its input shape, the channel counts, the threads and this machine (host, CPU
model, core count, TensorFlow and LiteRT versions), in
``$TFPRUNE_CACHE_DIR/latency/`` (default ``~/.cache/tfprune/latency/``), so
timing a model again, or another model with the same layers, costs only the
dense model's run. Measured on this repository's 2-core machine: about 0.4 s
per point (VGG-13: 11 layers, about 150 points, one minute the first time).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from tfprune.atomic import write_json
from tfprune.data.cache import cache_root
from tfprune.export.latency import litert_latency
from tfprune.export.tflite import export_tflite
from tfprune.graph.channels import ChannelGraph, graph_for
from tfprune.layer_configs import rebuild
from tfprune.pruning.cost import CostModel
from tfprune.pruning.latency_cost import CallTimes, ChannelCount, LatencyTable

#: Fractions of a layer's dense channel counts it is timed at.
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def litert_timer(threads: int = 1, repeats: int = 30) -> Callable[[keras.Model], float]:
    """``timer(model) -> ms``: the median batch-1 LiteRT time of the model's float .tflite."""
    def timer(model: keras.Model) -> float:
        with tempfile.TemporaryDirectory() as scratch:
            path = export_tflite(model, Path(scratch) / "model.tflite")
            return litert_latency(path, threads, repeats).median_ms
    return timer


def measure_latency_table(model: keras.Model, graph: ChannelGraph | None = None, *,
                          threads: int = 1, round_to: int = 1, fractions=FRACTIONS,
                          repeats: int = 30, timer: Callable[[keras.Model], float] | None = None,
                          cache_dir: str | os.PathLike | None = None,
                          progress: Callable[[str], None] | None = None) -> LatencyTable:
    """Times each kernel layer of ``model`` alone at a few channel counts (module docstring).

    Args:
        model: A built functional or Sequential Keras model.
        graph: Its ``ChannelGraph`` (default: the shared one).
        threads: LiteRT threads.
        round_to: Channel counts timed are multiples of it (or the dense count).
        fractions: Fractions of each dense count timed.
        repeats: Timed runs per point (the median is kept).
        timer: ``timer(model) -> ms``; default ``litert_timer(threads, repeats)``.
            A timer of your own (another runtime, a synthetic cost) is not cached.
        cache_dir: The cache's root (default ``$TFPRUNE_CACHE_DIR`` or ~/.cache/tfprune).
        progress: Called with a line of text after each layer.

    Returns:
        The ``LatencyTable``.
    """
    graph = graph or graph_for(model)
    cache = None if timer is not None else _Cache(cache_root(cache_dir), threads)
    timer = timer or litert_timer(threads, repeats)
    say = progress or (lambda line: None)
    calls, untimed = [], []
    kernel_calls = CostModel(model, graph).kernel_calls
    for position, (call, handler) in enumerate(kernel_calls, 1):
        inputs = ChannelCount.of(graph, graph.layer_inputs.get(call.name))
        outputs = ChannelCount.of(graph, graph.layer_outputs.get(call.name))
        probe = _Probe.of(call, handler)
        if probe is None:
            untimed.append(call.name)
            continue
        if not ((inputs and inputs.prunable) or (outputs and outputs.prunable)):
            continue  # no plan changes it: its time is in the constant
        in_counts = _grid(probe.inputs, inputs, fractions, round_to)
        diagonal = inputs is not None and inputs == outputs
        out_counts = [probe.outputs] if diagonal else _grid(probe.outputs, outputs, fractions,
                                                            round_to)
        try:
            ms = [[probe.time(a, a if diagonal else b, timer, cache) for b in out_counts]
                  for a in in_counts]
        except Exception as error:  # noqa: BLE001 - a layer that cannot run alone stays untimed
            untimed.append(call.name)
            say(f"latency table: {call.name} cannot be timed alone ({error}); its time is "
                "counted as constant")
            continue
        calls.append(CallTimes(call.name, in_counts, out_counts, ms))
        if cache is not None:
            cache.save()
        say(f"latency table: {position}/{len(kernel_calls)} {call.name} timed at "
            f"{len(in_counts) * len(out_counts)} channel counts")
    return LatencyTable(float(timer(model)), calls, untimed, threads)


def _grid(dense: int, count: ChannelCount | None, fractions, round_to: int) -> list[int]:
    """The channel counts a side is timed at: the dense count alone if no group changes it."""
    if count is None or not count.prunable:
        return [dense]
    points = {dense}
    for fraction in fractions:
        value = fraction * dense
        if round_to > 1:
            value = max(round_to, round(value / round_to) * round_to)
        points.add(int(min(dense, max(1, round(value)))))
    return sorted(points)


class _Probe:
    """One kernel call, rebuilt alone at other channel counts (by its handler's ``slim``)."""

    def __init__(self, call, handler, shape: tuple):
        self.call, self.handler, self.shape = call, handler, shape
        self.inputs, self.outputs = int(shape[-1]), int(call.outputs[0].shape[-1])
        layer = call.operation
        config = {key: value for key, value in layer.get_config().items() if key != "name"}
        self.identity = json.dumps([type(layer).__module__, type(layer).__qualname__, config,
                                    list(shape[1:-1])], sort_keys=True, default=str)

    @classmethod
    def of(cls, call, handler) -> _Probe | None:
        """The probe of a layer called on one tensor; None for anything else."""
        tensors = [t for t in call.inputs if hasattr(t, "shape")]
        if not isinstance(call.operation, keras.layers.Layer) or len(tensors) != 1:
            return None
        return cls(call, handler, tuple(tensors[0].shape))

    def model(self, inputs: int, outputs: int) -> keras.Model:
        """A one-layer model: this layer with ``inputs`` and ``outputs`` channels."""
        indices = _Indices(None if inputs == self.inputs else np.arange(inputs),
                           None if outputs == self.outputs else np.arange(outputs))
        config, _ = self.handler.slim(self.call.operation, indices)
        tensor = keras.Input(batch_shape=(1, *self.shape[1:-1], inputs))
        return keras.Model(tensor, rebuild(self.call.operation, config)(tensor))

    def time(self, inputs: int, outputs: int, timer, cache) -> float:
        """Milliseconds at these counts (from the cache when known)."""
        key = hashlib.sha1(f"{self.identity}|{inputs}|{outputs}".encode()).hexdigest()
        if cache is not None and key in cache.times:
            return cache.times[key]
        ms = float(timer(self.model(inputs, outputs)))
        if cache is not None:
            cache.times[key] = ms
        return ms


class _Indices:
    """A ``SlimContext`` stand-in: the first ``n`` input and output channels kept."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs

    def input_index(self, layer):
        return self.inputs

    def output_index(self, layer):
        return self.outputs

    def inner_index(self, layer, unit):
        return None


class _Cache:
    """Measured times of this machine and thread count, one JSON file."""

    def __init__(self, root: Path, threads: int):
        machine = json.dumps([platform.node(), platform.machine(), _cpu_model(), os.cpu_count(),
                              _version("tensorflow"), _version("ai-edge-litert"), threads])
        self.path = root / "latency" / f"{hashlib.sha1(machine.encode()).hexdigest()[:16]}.json"
        try:
            self.times = {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):  # absent or damaged: measured again
            self.times = {}

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.times, indent=None)
        except OSError:  # a cache that cannot be written costs time, never the plan
            pass


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""
