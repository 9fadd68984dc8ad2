"""The built-in importance measures of the gradient-flow paper and its baselines.

Notation, per filter p with kernel elements theta_i: g is the mean gradient
of the loss, Hg the Hessian-gradient product, theta(0) the initial kernel.
Higher scores are more important; the lowest are pruned first.

=====================  ===================================  ==========================
name                   filter score                         weight score
=====================  ===================================  ==========================
magnitude              sum theta_i^2  (Eq. 1)               theta_i^2
magnitude_l1           sum |theta_i|                        |theta_i|
loss_preservation      |sum theta_i g_i|  (Eq. 3)           |theta_i g_i|
snip                   sum |theta_i g_i|  (reference code)  |theta_i g_i|
proposed               sum |theta_i| |theta_i g_i|          |theta_i| |theta_i g_i|
grasp                  sum theta_i (Hg)_i  (Eq. 5), T=200   theta_i (Hg)_i
grasp_abs              |sum theta_i (Hg)_i|, T=1            |theta_i (Hg)_i|
random                 U(0, 1), seeded                      U(0, 1), seeded
uniform                per-layer ranks in (0, 1]            per-layer ranks in (0, 1]
bn_scale               |gamma| of the following BN          (filter only)
taylor_fo              (gamma g_gamma + beta g_beta)^2      (theta_i g_i)^2
distance_from_init     sum (theta_i - theta_i(0))^2         (theta_i - theta_i(0))^2
activation             mean |a_p| on the data (Minitron)    (filter only)
=====================  ===================================  ==========================

``loss_preservation`` is the paper's Eq. 3: the absolute value of the
filter-level inner product, so positive and negative element terms cancel.
``activation`` reads no weight: it is the mean absolute output of the
filter (a head's attention output) over the data, in inference mode
(``tfprune.importance.activations``).

``snip`` is what the reference code calls "loss-based": absolute values per
element, then summed, so they never cancel. The two rank filters differently.
"""

from __future__ import annotations

import zlib

import numpy as np

from tfprune.importance.measure_registry import ImportanceMeasure, register_measure


class _GradientMeasure(ImportanceMeasure):
    """A measure of theta and g at a loss temperature (the training one, usually)."""

    requires = frozenset({"gradient"})
    uses_training_temperature = True

    def __init__(self, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def get_config(self) -> dict:
        return {"temperature": self.temperature}


@register_measure("magnitude")
class Magnitude(ImportanceMeasure):
    """L2 magnitude ||Theta_p||^2 (Eq. 1); data-free."""

    def weight_scores(self, view):
        return view.kernel ** 2


@register_measure("magnitude_l1")
class MagnitudeL1(ImportanceMeasure):
    """L1 magnitude sum |theta_i|; data-free."""

    def weight_scores(self, view):
        return np.abs(view.kernel)


@register_measure("loss_preservation")
class LossPreservation(_GradientMeasure):
    """Loss preservation |Theta_p^T g| (Eq. 3): the first-order change of the loss."""

    def weight_scores(self, view):
        return np.abs(view.kernel * view.gradient)

    def filter_scores(self, view):
        return np.abs(view.by_filter(view.kernel * view.gradient).sum(axis=0))


@register_measure("snip")
class Snip(_GradientMeasure):
    """sum |theta_i g_i|: the reference code's "loss-based" measure (SNIP-like)."""

    def weight_scores(self, view):
        return np.abs(view.kernel * view.gradient)


@register_measure("proposed")
class Proposed(_GradientMeasure):
    """Magnitude-biased loss preservation sum |theta_i| |theta_i g_i| (Table 1).

    Args:
        temperature: Loss temperature of g.
        use_distance_from_init: Bias by |theta_i - theta_i(0)| instead of |theta_i|.
    """

    def __init__(self, temperature: float = 1.0, use_distance_from_init: bool = False):
        super().__init__(temperature)
        self.use_distance_from_init = bool(use_distance_from_init)
        if self.use_distance_from_init:
            self.requires = frozenset({"gradient", "initial_weights"})

    def get_config(self) -> dict:
        return {**super().get_config(), "use_distance_from_init": self.use_distance_from_init}

    def weight_scores(self, view):
        kernel = view.kernel
        bias = np.abs(kernel - view.initial_kernel) if self.use_distance_from_init else np.abs(
            kernel)
        return bias * np.abs(kernel * view.gradient)


class _HessianMeasure(_GradientMeasure):
    requires = frozenset({"hessian_gradient"})
    uses_training_temperature = False

    def _products(self, view):
        return view.kernel * view.hessian_gradient


@register_measure("grasp")
class Grasp(_HessianMeasure):
    """GraSP, Theta_p^T H g (Eq. 5) on logits / temperature; the lowest are pruned first.

    Args:
        temperature: GraSP's temperature (200 by default, as GraSP; 1 for
            "GraSP without temperature").
    """

    def __init__(self, temperature: float = 200.0):
        super().__init__(temperature)

    def weight_scores(self, view):
        return self._products(view)


@register_measure("grasp_abs")
class GraspAbs(_HessianMeasure):
    """Gradient-norm preservation |Theta_p^T H g|, at temperature 1 by default."""

    def weight_scores(self, view):
        return np.abs(self._products(view))

    def filter_scores(self, view):
        return np.abs(view.by_filter(self._products(view)).sum(axis=0))


class _SeededMeasure(ImportanceMeasure):
    group_reduction = "first"  # one draw per channel group, however many layers feed it

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}

    def _rng(self, view) -> np.random.Generator:
        """A generator depending only on (seed, layer name)."""
        return np.random.default_rng([self.seed, zlib.crc32(view.name.encode())])

    def _shape(self, view, per_filter: bool) -> tuple:
        return (view.layer.filters,) if per_filter else view.layer.shape


@register_measure("random")
class Random(_SeededMeasure):
    """A seeded U(0, 1) score per filter or weight (Appendix E)."""

    def weight_scores(self, view):
        return self._rng(view).uniform(size=self._shape(view, False))

    def filter_scores(self, view):
        return self._rng(view).uniform(size=self._shape(view, True))


@register_measure("uniform")
class Uniform(_SeededMeasure):
    """Uniform pruning (Appendix E): the same fraction from every layer, chosen at random.

    Each layer's n units get a random permutation of the ranks 1/n, 2/n, ..., 1,
    so a global threshold t removes floor-ish(t * n) units of every layer.
    """

    def _ranks(self, view, shape):
        size = int(np.prod(shape))
        return ((self._rng(view).permutation(size) + 1) / size).reshape(shape)

    def weight_scores(self, view):
        return self._ranks(view, self._shape(view, False))

    def filter_scores(self, view):
        return self._ranks(view, self._shape(view, True))


@register_measure("bn_scale")
class BatchNormScale(ImportanceMeasure):
    """|gamma| of the BatchNorm after the layer (network slimming, early-bird tickets)."""

    requires = frozenset({"batch_norm"})
    granularities = ("filter",)

    def filter_scores(self, view):
        return np.abs(view.batch_norm_value("gamma"))


@register_measure("taylor_fo")
class TaylorFirstOrder(_GradientMeasure):
    """First-order Taylor importance on BN parameters (Molchanov et al., 2019).

    Filter: (gamma g_gamma + beta g_beta)^2 of the BN after the layer, with g
    the mean gradient (Molchanov et al. average per-batch squares instead).
    Weight: (theta_i g_i)^2.
    """

    def check(self, context, granularity):
        super().check(context, granularity)
        if granularity == "filter":
            for layer in context.layers:
                context.view(layer).batch_norm  # noqa: B018 - raises naming the layer

    def weight_scores(self, view):
        return (view.kernel * view.gradient) ** 2

    def filter_scores(self, view):
        contribution = sum(
            view.batch_norm_value(which) * view.batch_norm_gradient(which)
            for which in ("gamma", "beta")
        )
        return contribution ** 2


@register_measure("distance_from_init")
class DistanceFromInit(ImportanceMeasure):
    """||Theta_p(t) - Theta_p(0)||^2 (Section 4.1); needs the initial weights."""

    requires = frozenset({"initial_weights"})

    def weight_scores(self, view):
        return (view.kernel - view.initial_kernel) ** 2


@register_measure("activation")
class Activation(ImportanceMeasure):
    """Mean |activation| per channel or head on calibration data (Minitron).

    A neuron's or filter's output, a head's attention output (the input of
    the output projection), averaged over the data's positions with the
    padding masked (``tfprune.importance.activations``). Data-driven but
    gradient-free: one inference-mode forward pass per batch.
    """

    requires = frozenset({"activations"})
    granularities = ("filter",)

    def filter_scores(self, view):
        return view.activation
