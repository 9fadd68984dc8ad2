"""``ScoringContext``: one model, one set of samples, gradients computed once and shared.

Measures read parameters, g and Hg through ``LayerView`` objects. The context
computes g (per temperature, over the gradient stream) and Hg (per
temperature, over the class-balanced memory) lazily on first use and caches
them, so scoring several measures, or the analysis tools, reuses one pass:
g for every trainable variable, Hg for the prunable kernels (the only rows a
measure reads; the others are never computed).
"""

from __future__ import annotations

import contextlib
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfprune.data import DataBundle
from tfprune.graph.model_graph import calls
from tfprune.importance.activations import mean_activations
from tfprune.importance.batchnorm import (
    DEGENERATE_RATIO,
    batch_norm_layers,
    inference_spread,
    recalibrated_batchnorm,
)
from tfprune.importance.gradients import GradientEstimator
from tfprune.importance.objective import ScoringObjective
from tfprune.importance.prunable import PrunableLayer, prunable_layers
from tfprune.importance.samples import (
    SampleError,
    batch_size_of,
    gradient_batches,
    memory_batches,
    scoring_memory,
    take_rows,
)
from tfprune.importance.scores import ScoringError
from tfprune.importance.task_data import through_preprocessor
from tfprune.model_cache import model_cache
from tfprune.model_files import ModelFileError, load_model_file
from tfprune.precision import float32_model
from tfprune.workers import (
    local_replicas,
    model_strategy,
    sum_across_workers,
    worker_count,
    worker_index,
)

#: Largest memory the default ``hessian_batch_size`` takes in one nested pass.
FUSED_MEMORY_LIMIT = 256

#: One estimator per model, so its traced functions are reused across contexts.
_ESTIMATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def estimator_for(model: keras.Model, hessian_variables=None,
                  objective: ScoringObjective | None = None,
                  variables=None) -> GradientEstimator:
    """Returns the model's ``GradientEstimator``, creating it on first use.

    Args:
        model: The Keras model.
        hessian_variables: The variables Hg is taken for (None: all of
            ``variables``); a different list than the cached estimator's makes
            a new one.
        objective: The loss (default: the model's own); one with another
            ``key`` than the cached estimator's makes a new one.
        variables: The variables g is taken for (None: the trainable ones).
    """
    estimator = _ESTIMATORS.get(model)
    variables = list(model.trainable_variables if variables is None else variables)
    wanted = list(variables if hessian_variables is None else hessian_variables)
    objective = objective or ScoringObjective(model)
    if (estimator is None or [id(v) for v in estimator.variables] != [id(v) for v in variables]
            or [id(v) for v in estimator.hessian_variables] != [id(v) for v in wanted]
            or estimator.objective.key != objective.key):
        estimator = GradientEstimator(model, hessian_variables=wanted, objective=objective,
                                      variables=variables)
        _ESTIMATORS[model] = estimator
    return estimator


def _fingerprint(values) -> tuple:
    """Shapes and sums of tensors or arrays.

    Equal for the same values; almost surely not for others (weights after a
    training step, another batch).
    """
    return tuple((tuple(np.shape(value)), float(np.sum(np.asarray(value, np.float64))))
                 for value in keras.tree.flatten(values))


def scored_variables(model: keras.Model) -> list:
    """The variables g is taken for and H spans: those the model would train if all unfrozen.

    A layer frozen with ``trainable = False`` (a pretrained backbone under a new
    head) still has a gradient: its weights join g and H as if they were
    trained, so the scores do not depend on which layers are frozen (a
    BatchNorm's moving statistics stay out, as they do when it trains).
    """
    variables = {id(v): v for v in model.trainable_variables}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        for variable in layer._trainable_variables:  # created trainable, frozen or not
            variables.setdefault(id(variable), variable)
    return list(variables.values())


#: ``ScoringContext(batchnorm=...)`` choices.
BATCHNORM_MODES = ("auto", "inference", "recalibrate")


class ScoringContext:
    """A model, its scoring samples and the cached g / Hg computed from them.

    Args:
        model: A built Keras model. One computing in half precision (a
            ``mixed_float16`` / ``mixed_bfloat16`` policy) is scored through
            its float32 copy (``tfprune.precision.float32_model``), taken now.
        data: None (data-free measures only); ``(x, y)`` or ``(x, y,
            sample_weight)`` NumPy arrays (``x``, ``y`` may be lists or dicts);
            a ``tf.data.Dataset`` of such tuples or of dicts (see
            ``data_keys``); a ``keras.utils.PyDataset``; or a ``DataBundle``.
            For a keras-hub task model with a preprocessor, a dataset or
            arrays of raw inputs (strings, images), mapped through it
            (``tfprune.importance.task_data``).
        num_samples: Training samples averaged into g (the reference: 2560).
        samples_per_class: Size per class of the memory for Hg (GraSP: 10).
            Without class labels (a regression loss), the memory is
            ``samples_per_class * 10`` samples drawn at random.
        batch_size: Batch size of the g passes over arrays, unbatched datasets
            and the memory.
        hessian_batch_size: Batch size of the Hg passes (their memory grows
            with it). Hg is linear in the loss, so any split of the memory
            gives the same average (the reference code takes one class per
            batch: ``samples_per_class``). At or above the memory's size, g and
            Hg come from one fused nested pass (Hg = gradient of ||g||^2 / 2),
            about a third cheaper. None (default): the whole memory in one
            fused pass if it holds at most ``FUSED_MEMORY_LIMIT`` samples
            (CIFAR-10's default memory of 100 does), else batches of that size.
        seed: Chooses the samples.
        initial_weights: Kernels at initialization, for distance-from-init
            measures: a dict ``{layer_name: array}``, a model of the same
            architecture, or a path to a ``.weights.h5`` / ``.keras`` file.
        include_output_layers: Also score the layers producing model outputs.
        batchnorm: How BatchNorm runs while g and Hg are taken. ``"inference"``:
            with its moving statistics (the paper). ``"recalibrate"``: with the
            moving statistics set, for the scoring only, to the mean batch
            statistics of the g samples. ``"auto"`` (default): inference mode,
            unless it is degenerate (the logits' spread below
            ``DEGENERATE_RATIO`` of the spread with batch statistics, as early
            in training with a high BN momentum), then recalibrated. The choice
            is in ``batchnorm_used`` and the scores' metadata.
        loss: The loss gradients are taken of: None (default) for the loss the
            model is compiled with, else the paper's cross-entropy; or a Keras
            loss, or a list / dict with one per output (see
            ``tfprune.importance.objective``). Recorded in the metadata.
        loss_weights: With ``loss``: per-output weights.
        data_keys: For datasets of dicts: ``(input_keys, target_keys)`` or
            ``(input_keys, target_keys, weight_key)``, each a key or list of
            keys. Default: tfds' ``("image", "label")``.
        verbose: 1 prints, before each pass, the samples it averages over (and
            when the data holds fewer than asked) and the loss, then a progress
            bar; 0 (default) is silent.

    Under a multi-worker strategy (``tfprune.workers``), each worker's sums are
    added over the workers, so every worker gets the scores of the union of
    their samples. A ``DataBundle`` is the same dataset on every worker: each
    worker then takes every n-th of the samples drawn from it (n workers), and
    together they score exactly the samples one process would, each worker
    doing 1/n of the work. Other data (arrays, datasets) is taken as this
    worker's own shard.

    Example:
        >>> context = ScoringContext(model, (x_train, y_train), num_samples=512)
        >>> snip = get_measure("snip").score(context)
        >>> grasp = get_measure("grasp").score(context)  # reuses nothing but the samples
    """

    def __init__(
        self, model: keras.Model, data=None, *, num_samples: int = 2560,
        samples_per_class: int = 10, batch_size: int = 128,
        hessian_batch_size: int | None = None, seed: int = 0, initial_weights=None,
        include_output_layers: bool = False, batchnorm: str = "auto", loss=None,
        loss_weights=None, data_keys=None, verbose: int = 0,
    ):
        for name, value in (("num_samples", num_samples), ("samples_per_class",
                            samples_per_class), ("batch_size", batch_size)):
            if int(value) < 1:
                raise ScoringError(f"{name} must be >= 1, got {value}.")
        if hessian_batch_size is not None and hessian_batch_size < 1:
            raise ScoringError(f"hessian_batch_size must be >= 1, got {hessian_batch_size}.")
        if batchnorm not in BATCHNORM_MODES:
            raise ScoringError(f"batchnorm must be one of {list(BATCHNORM_MODES)}, got "
                               f"{batchnorm!r}.")
        self.batchnorm = batchnorm
        self.batchnorm_used: str | None = None
        #: The model as given (its compiled loss is the objective's).
        self.source_model = model
        #: The model g and Hg are computed with: ``model``, or its float32 copy when it
        #: computes in half precision (mixed precision), whose scores would lose their digits.
        self.model = float32_model(model)
        self.layers: list[PrunableLayer] = prunable_layers(self.model, include_output_layers)
        self.data = through_preprocessor(model, data, int(batch_size))
        #: Whether the data is the same on every worker (a DataBundle), to be shared out.
        self._same_on_every_worker = isinstance(data, DataBundle)
        self.num_samples = int(num_samples)
        self.samples_per_class = int(samples_per_class)
        self.batch_size = int(batch_size)
        self.hessian_batch_size = hessian_batch_size
        self.seed = int(seed)
        self._initial_source = initial_weights
        self._initial: dict[str, np.ndarray] | None = None
        self._variables = scored_variables(self.model)
        self._positions = {id(v): i for i, v in enumerate(self._variables)}
        self._gradients: dict[float, list[np.ndarray]] = {}
        self._hessian_gradients: dict[float, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._activations: dict[str, np.ndarray] | None = None
        self._stream = None
        self._memory = None
        self.samples_used: dict[str, int] = {}
        self._loss, self._loss_weights = loss, loss_weights
        self.data_keys = data_keys
        self.verbose = int(verbose)
        self._objective: ScoringObjective | None = None

    # -- samples -----------------------------------------------------------------------
    def _require_data(self, what: str) -> None:
        if self.data is None:
            raise SampleError(
                f"{what} needs data: pass (x, y) NumPy arrays, a tf.data.Dataset of (x, y) "
                "batches, a keras.utils.PyDataset or a tfprune.data.DataBundle."
            )

    @property
    def loss_used(self) -> list[str] | None:
        """The loss terms gradients were taken of, None if no gradient was taken."""
        return None if self._objective is None else self._objective.description

    @property
    def objective(self) -> ScoringObjective:
        """The loss gradients are taken of (built on first use)."""
        if self._objective is None:
            self._objective = ScoringObjective(self.source_model, self._loss, self._loss_weights,
                                               forward_model=self.model)
        return self._objective

    @property
    def _input_rank(self) -> int:
        return len(self.model.inputs[0].shape)

    def stream(self) -> list:
        """The batches g is averaged over (drawn once)."""
        if self._stream is None:
            self._require_data("a gradient-based measure")
            self._stream = self._worker_share(gradient_batches(
                self.data, self.num_samples, input_rank=self._input_rank,
                batch_size=self.batch_size, seed=self.seed, keys=self.data_keys,
            ))
            self.samples_used["gradient"] = sum(map(batch_size_of, self._stream))
            if not self.samples_used["gradient"]:
                raise SampleError("data: no samples for the gradient.")
        return self._stream

    def memory(self) -> tuple:
        """The memory ``(x, y, sample_weight)`` Hg is averaged over (drawn once).

        Class-balanced for a class loss, else random.
        """
        if self._memory is None:
            self._require_data("a Hessian-gradient measure")
            (self._memory,) = self._worker_share([scoring_memory(
                self.data, self.objective, self.samples_per_class,
                input_rank=self._input_rank, seed=self.seed, keys=self.data_keys,
            )], whole=True)
            self.samples_used["hessian"] = batch_size_of(self._memory)
        return self._memory

    def _worker_share(self, batches: list, whole: bool = False) -> list:
        """This worker's every n-th row of the batches, when the data is on every worker.

        Unchanged with one worker, for a worker's own data, or when there are
        fewer samples than workers. ``whole``: keep one batch (the memory) even
        if this worker's share of it is small.
        """
        workers = worker_count(model_strategy(self.source_model))
        if workers == 1 or not self._same_on_every_worker or \
                sum(map(batch_size_of, batches)) < workers:
            return batches
        index = worker_index(model_strategy(self.source_model))
        shares = [take_rows(batch, slice(index, None, workers)) for batch in batches]
        return shares if whole else [share for share in shares if batch_size_of(share)]

    def _memory_batches(self, size: int) -> list:
        return memory_batches(self.memory(), size)

    # -- cached quantities -------------------------------------------------------------
    def gradients(self, temperature: float) -> list[np.ndarray]:
        """Mean gradient g over the stream at ``temperature``, one array per scored variable."""
        key = float(temperature)
        if key not in self._gradients:
            with self._batchnorm_scope(self.stream()):
                self._announce("g", self.samples_used["gradient"], self.num_samples)
                values = self._estimator().mean_gradient(self.stream(), key)
            self._gradients[key] = [v.numpy() for v in values]
        return self._gradients[key]

    def activations(self) -> dict[str, np.ndarray]:
        """Mean ``|activation|`` per channel of every scored unit over the stream (cached).

        See ``tfprune.importance.activations``: one inference-mode forward pass
        per batch, positions weighted by the sample weights (padding masked).
        """
        if self._activations is None:
            stream = self.stream()
            if self.verbose:
                print(f"scoring: activations over {self.samples_used['gradient']} samples "
                      "(inference mode)", flush=True)
            self._activations = mean_activations(self.model, self.layers, stream,
                                                 model_strategy(self.source_model))
        return self._activations

    def _announce(self, what: str, used: int, asked: int) -> None:
        """Prints, when verbose, what a pass averages over and the loss it differentiates."""
        self._estimator().verbose = self.verbose
        if not self.verbose:
            return
        fewer = f" (all the data given: fewer than the {asked} asked)" if used < asked else ""
        strategy = model_strategy(self.source_model)
        workers, replicas = worker_count(strategy), local_replicas(strategy)
        where = (f" on this worker, summed over {workers} workers" if workers > 1 else
                 f", split over {replicas} replicas" if replicas > 1 else "")
        print(f"scoring: {what} over {used} samples{fewer}{where}; loss "
              f"{'; '.join(self.objective.description)}", flush=True)

    def _batchnorm_scope(self, batches: list):
        """Where g or Hg over ``batches`` is taken: as the model is, or with BN recalibrated."""
        if self.batchnorm_used is None:
            self.batchnorm_used = self._decide_batchnorm(batches[0][0])
        if self.batchnorm_used.startswith("recalibrated"):
            return recalibrated_batchnorm(self.model, batches)
        return contextlib.nullcontext()

    def _decide_batchnorm(self, images) -> str:
        if self.batchnorm == "inference" or not batch_norm_layers(self.model):
            return "inference"
        if self.batchnorm == "recalibrate":
            return "recalibrated"
        # "auto": decided once per weights, loss and batch (kept on the model), so scoring
        # the same weights again (another measure, a monitor) skips the check. Several
        # workers decide together, on the mean spreads of their batches, every time.
        strategy = model_strategy(self.source_model)
        workers = worker_count(strategy)
        key = (self.objective.key, _fingerprint(self.model.weights), _fingerprint(images))
        known = model_cache(self.model).get("batchnorm_decision")
        if known is not None and known[0] == key and workers == 1:
            return known[1]
        inference, training = inference_spread(self.model, self.objective.forward, images,
                                               cache_key=self.objective.key)
        if workers > 1:
            inference, training = (float(v) / workers for v in sum_across_workers(
                [tf.constant(inference, tf.float64), tf.constant(training, tf.float64)],
                strategy))
        decision = "inference"
        if inference < DEGENERATE_RATIO * training:
            decision = (f"recalibrated (auto: inference-mode logit spread {inference:.3g} vs "
                        f"{training:.3g} with batch statistics)")
        model_cache(self.model)["batchnorm_decision"] = (key, decision)
        return decision

    def _estimator(self) -> GradientEstimator:
        """The model's estimator, Hg taken for the prunable kernels; fails on a frozen one."""
        kernels = self._kernels()
        for kernel in kernels:
            self.position(kernel)
        return estimator_for(self.model, kernels, self.objective, self._variables)

    def _kernels(self) -> list:
        """Every kernel the prunable layers and units read, each once, in order."""
        return list({id(v): v for layer in self.layers for v in layer.variables}.values())

    def hessian_gradients(self, temperature: float) -> tuple[list[np.ndarray], list]:
        """``(g, Hg)`` over the class-balanced memory at ``temperature``, as GraSP computes them.

        Both are lists indexed like ``scored_variables`` (see
        ``position``). Hg holds arrays at the prunable kernels' positions and
        None elsewhere: its other rows are not computed.
        """
        key = float(temperature)
        if key not in self._hessian_gradients:
            with self._batchnorm_scope(self._memory_batches(self.batch_size)):
                self._hessian_gradients[key] = self._compute_hessian_gradients(key)
        return self._hessian_gradients[key]

    def _compute_hessian_gradients(self, key: float) -> tuple[list[np.ndarray], list]:
        estimator = self._estimator()
        memory = self.memory()
        size = batch_size_of(memory)
        self._announce("g and Hg (the Hessian-gradient memory)", size, size)
        hg_batch = self.hessian_batch_size or min(size, FUSED_MEMORY_LIMIT)
        # The fused pass multiplies H by this memory's own g; several workers or replicas,
        # each with a part of the memory, need the g of all the parts together first.
        alone = model_strategy(self.source_model).num_replicas_in_sync == 1
        if hg_batch >= size and alone:  # the whole memory at once: one fused pass
            g, hg = estimator.gradient_and_hessian_gradient(*memory, temperature=key)
        else:
            # g is a plain mean, so its pass may take larger batches than the Hg passes.
            g = estimator.mean_gradient(self._memory_batches(self.batch_size), key)
            hg = estimator.hessian_gradient_product(g, self._memory_batches(hg_batch), key)
        full_hg = [None] * len(g)
        for kernel, value in zip(self._kernels(), hg, strict=True):
            full_hg[self.position(kernel)] = value.numpy()
        return [v.numpy() for v in g], full_hg

    def gradient_norms(self) -> dict[str, float]:
        """L2 norms of each prunable layer's kernel gradient, if g was computed ({} if not).

        Uses the first g computed: over the stream, else over the Hg memory (the
        paper's Fig. 21).
        """
        computed = list(self._gradients.values()) + [g for g, _ in
                                                     self._hessian_gradients.values()]
        if not computed:
            return {}
        values = computed[0]
        return {layer.name: float(np.linalg.norm(layer.gather(
                    [values[self.position(v)] for v in layer.variables])))
                for layer in self.layers}

    def position(self, variable) -> int:
        """The index of a variable in the cached gradient lists (``scored_variables``)."""
        try:
            return self._positions[id(variable)]
        except KeyError:
            raise ScoringError(
                f"variable {variable.path!r} is neither trainable in model "
                f"{self.model.name!r} nor read by the scores, so no gradient was taken for it."
            ) from None

    def initial_kernel(self, layer: PrunableLayer) -> np.ndarray:
        """The layer's kernel at initialization."""
        if self._initial is None:
            if self._initial_source is None:
                raise ScoringError(
                    "this measure needs the weights at initialization: pass initial_weights "
                    "(a dict {layer_name: kernel}, a model, or a .weights.h5/.keras path)."
                )
            self._initial = initial_kernels(self.model, self._initial_source, self.layers)
        return self._initial[layer.name]

    def view(self, layer: PrunableLayer, temperature: float = 1.0) -> LayerView:
        """A ``LayerView`` of one prunable layer at a loss temperature."""
        return LayerView(self, layer, temperature)


def initial_kernels(model: keras.Model, source, layers: list[PrunableLayer]) -> dict:
    """Reads the kernels at initialization from a dict, a model or a weights file."""
    if isinstance(source, dict):
        kernels = {name: np.asarray(value) for name, value in source.items()}
    else:
        if not isinstance(source, keras.Model):
            source = _load_initial_model(model, str(source))
        kernels = {}
        others = {call.name: call.operation for call in calls(source)}
        for layer in layers:
            other = others.get(layer.layer_name or layer.layer.name)
            if other is not None:
                kernels[layer.name] = layer.read(other)
    for layer in layers:
        if layer.name not in kernels:
            raise ScoringError(f"initial_weights: no kernel for layer {layer.name!r}.")
        if kernels[layer.name].shape != layer.shape:
            raise ScoringError(
                f"initial_weights: layer {layer.name!r} has shape {kernels[layer.name].shape}, "
                f"the model's kernel is {layer.shape}."
            )
    return kernels


def _load_initial_model(model: keras.Model, path: str) -> keras.Model:
    if path.endswith(".keras"):
        try:
            return load_model_file(path, what="initial_weights")
        except ModelFileError as error:
            raise ScoringError(str(error)) from None
    if not path.endswith(".weights.h5"):
        raise ScoringError(f"initial_weights: {path} is neither a .keras nor a .weights.h5 file.")
    clone = keras.models.clone_model(model)
    clone.load_weights(path)
    return clone


class LayerView:
    """What a measure sees of one layer: kernel, g, Hg, initial kernel, BatchNorm.

    Every array has the kernel's shape unless noted; g and Hg are read lazily
    from the context's cache.

    Args:
        context: The ``ScoringContext``.
        layer: The ``PrunableLayer``.
        temperature: The loss temperature of ``gradient`` and ``hessian_gradient``.
    """

    def __init__(self, context: ScoringContext, layer: PrunableLayer, temperature: float):
        self.context = context
        self.layer = layer
        self.temperature = float(temperature)

    @property
    def name(self) -> str:
        """The layer's name."""
        return self.layer.name

    @property
    def kernel(self) -> np.ndarray:
        """The current kernel (a unit's gathered kernels: ``PrunableLayer.gather``), float64."""
        return self.layer.gather([np.asarray(v, np.float64) for v in self.layer.variables])

    def _of(self, values: list[np.ndarray], variable) -> np.ndarray:
        return values[self.context.position(variable)].astype(np.float64)

    def _gathered(self, values: list[np.ndarray]) -> np.ndarray:
        return self.layer.gather([self._of(values, v) for v in self.layer.variables])

    @property
    def gradient(self) -> np.ndarray:
        """The mean gradient g of the loss over the gradient stream."""
        return self._gathered(self.context.gradients(self.temperature))

    @property
    def hessian_gradient(self) -> np.ndarray:
        """Hg over the class-balanced memory (g taken over the memory too, as GraSP)."""
        return self._gathered(self.context.hessian_gradients(self.temperature)[1])

    @property
    def activation(self) -> np.ndarray:
        """Mean ``|activation|`` per filter over the data (``ScoringContext.activations``)."""
        return self.context.activations()[self.layer.name]

    @property
    def initial_kernel(self) -> np.ndarray:
        """The kernel at initialization."""
        return np.asarray(self.context.initial_kernel(self.layer), dtype=np.float64)

    @property
    def batch_norm(self) -> keras.layers.BatchNormalization:
        """The BatchNormalization fed directly by this layer."""
        if self.layer.batch_norm is None:
            raise ScoringError(
                f"layer {self.name!r} is not followed directly by a BatchNormalization; "
                "BN-based measures (bn_scale, taylor_fo) need conv -> BN."
            )
        return self.layer.batch_norm

    def batch_norm_value(self, which: str) -> np.ndarray:
        """The following BN's ``"gamma"`` or ``"beta"``; zeros if the BN has none."""
        variable = getattr(self.batch_norm, which, None)
        if variable is None:
            return np.zeros(self.layer.filters)
        return np.asarray(variable, dtype=np.float64)

    def batch_norm_gradient(self, which: str) -> np.ndarray:
        """Gradient of the following BN's ``"gamma"`` or ``"beta"``; zeros if it has none."""
        variable = getattr(self.batch_norm, which, None)
        if variable is None:
            return np.zeros(self.layer.filters)
        return self._of(self.context.gradients(self.temperature), variable)

    def by_filter(self, array: np.ndarray) -> np.ndarray:
        """Reshapes a kernel-shaped array to ``(elements_per_filter, filters)``."""
        return self.layer.by_filter(array)
