"""``Pruner``: one model, one measure, one channel graph; score, plan, apply and slim.

The one object the Python API, ``PruningCallback`` and the CLI prune through:
it builds the channel graph once (failing early, with every unsupported layer
listed), resolves the measure by one rule (``measure_for_model``: a measure
given by name scores at the temperature the model is compiled with), and
keeps the plan in force, so each ``step`` removes channels on top of the
previous ones.
"""

from __future__ import annotations

import inspect
import warnings

import keras

from tfprune.graph.channels import graph_for
from tfprune.importance import ScoringContext, get_measure
from tfprune.importance.api import split_options
from tfprune.importance.blocks import block_importance
from tfprune.importance.measure_registry import ImportanceMeasure, measure_for_model
from tfprune.importance.prunable import prunable_weight_count
from tfprune.importance.scores import ImportanceScores
from tfprune.pruning.coverage import Coverage, coverage
from tfprune.pruning.masks import apply_plan
from tfprune.pruning.plan import PruningPlan, make_plan
from tfprune.pruning.ranking import RankingOptions


class Pruner:
    """Scores a model's channels and removes the least important, round after round.

    Args:
        model: A built Keras model (functional, Sequential, nested).
        importance: An importance measure: a registered name (see
            ``tfprune.importance.available_measures()``), a config dict or an
            ``ImportanceMeasure``. Given by name or dict, g-based measures
            without a ``temperature`` take the one the model is compiled with
            (``tfprune.losses.TemperatureCrossEntropy``; 1 otherwise), decided
            when scoring, so compiling after building the Pruner counts.
        data: What ``tfprune.score`` takes (None for data-free measures).
        granularity: ``"filter"`` (structured, the default) or ``"weight"``.
        ranking: How channels are ranked (``tfprune.pruning.ranking.RankingOptions``).
        score_options: Sampling options of ``tfprune.score`` (``num_samples``,
            ``samples_per_class``, ``batchnorm``, ``loss``, ``data_keys``...).
        seed: Seeds the scoring samples (``step`` k uses ``seed + k`` unless told).
        verbose: 1 (default) prints what pruning can reach (the channels kept whole
            and why, the removable share of parameters and FLOPs) and shows each
            scoring's progress, samples and loss; 0 is silent.
        **options: The ranking options as keywords instead (``scope``,
            ``min_keep``, ``reduction``, ``normalization``, ``round_to``,
            ``ignored_layers``: see ``RankingOptions``).

    Attributes:
        ranking: The ``RankingOptions`` its plans are made with.
        graph: The ``ChannelGraph`` (structured granularity; None for weights).
        coverage: What pruning can reach (``tfprune.pruning.coverage.Coverage``).
        plan: The ``PruningPlan`` in force (None before the first step).
        scores: The last ``ImportanceScores``.

    Raises:
        tfprune.pruning.GraphError: Listing every layer the analysis cannot handle.
        TypeError: For a scoring option nobody takes.

    Example:
        >>> pruner = tfprune.Pruner(model, "proposed", (x, y), round_to=8)
        >>> pruner.step(0.3)               # score, then remove 30% of the channels
        >>> pruner.step({"flops": 2e8})    # go on until the model fits a FLOPs budget
        >>> small = pruner.slim()          # a new model without the removed channels
    """

    def __init__(self, model: keras.Model, importance="magnitude", data=None, *,
                 granularity: str = "filter", ranking: RankingOptions | None = None,
                 score_options=None, seed: int = 0, verbose: int = 1, **options):
        self.model = model
        self.importance = importance
        get_measure(importance)  # an unknown name fails here
        self.data = data
        self.granularity = granularity
        self.ranking = RankingOptions.from_keywords("Pruner", ranking, options)
        self.score_options = dict(score_options or {})
        unknown = set(split_options(importance, self.score_options)[0])
        if unknown:
            raise TypeError(f"score_options {sorted(unknown)} configure the measure; give "
                            "them with it: {'name': ..., " + ", ".join(sorted(unknown)) + "}.")
        self.seed = int(seed)
        self.graph = (graph_for(model, self.ranking.ignored_layers, self.ranking.gqa)
                      if granularity == "filter"
                      else None)
        self.plan: PruningPlan | None = None
        self.scores: ImportanceScores | None = None
        self.context: ScoringContext | None = None
        self._warned_below = False
        self.verbose = int(verbose)
        self._coverage = None
        if self.graph is not None and self.verbose:
            print(f"tfprune: model {model.name!r}: {self.coverage.table()}", flush=True)

    @property
    def coverage(self) -> Coverage | None:
        """What pruning can reach (``tfprune.pruning.coverage``; None at weight granularity).

        Computed on first use (a data-free plan and its cost), so ``verbose=0`` pays nothing.
        """
        if self._coverage is None and self.graph is not None:
            self._coverage = coverage(self.model, self.graph, self.ranking.ignored_layers)
        return self._coverage

    @property
    def measure(self) -> ImportanceMeasure:
        """The measure as it scores now (a name takes the compiled training temperature)."""
        return measure_for_model(self.importance, self.model)

    @property
    def total(self) -> int:
        """Prunable channels (weights, at weight granularity) of the model."""
        if self.graph is not None:
            return sum(group.size for group in self.graph.groups)
        return prunable_weight_count(self.model)

    def score(self, seed: int | None = None, **options) -> ImportanceScores:
        """Scores the model as it is now.

        Args:
            seed: Seeds the samples (default: the Pruner's seed).
            **options: Overrides of ``score_options`` for this scoring.
        """
        options = {"verbose": self.verbose, **self.score_options, **options,
                   "seed": self.seed if seed is None else seed}
        self.context = ScoringContext(self.model, self.data, **options)
        self.scores = self.measure.score(self.context, self.granularity)
        return self.scores

    def check(self) -> None:
        """Scores once on one batch of samples (and the whole Hessian memory).

        A loss, data or model that cannot be scored then fails now rather than
        after an epoch of training. The batch and the memory have the shapes
        the rounds will use, so the functions traced here are the rounds' own:
        the first round traces nothing again.
        """
        if self.measure.requires:
            defaults = inspect.signature(ScoringContext).parameters
            options = {name: defaults[name].default for name in ("num_samples", "batch_size")}
            options.update(self.score_options)
            self.score(num_samples=min(int(options["num_samples"]), int(options["batch_size"])),
                       verbose=0)

    def plan_for(self, scores, target, previous: PruningPlan | None = None) -> PruningPlan:
        """The plan ``make_plan`` makes from ``scores`` (the Pruner's plan is not changed)."""
        return make_plan(self.model, scores, target, previous=previous, graph=self.graph,
                         ranking=self.ranking, progress=self._progress if self.verbose else None,
                         block_scores=self.block_scores())

    def block_scores(self):
        """With ``"depth"`` among the axes and data, each block's Block Influence on the data.

        ``tfprune.block_importance``: how much each transformer block turns its
        hidden states. None otherwise (``make_plan`` then sums the measure's
        scores of each block's units).
        """
        if self.ranking.axes is None or "depth" not in self.ranking.axes or self.data is None:
            return None
        data = self.data
        if isinstance(data, (tuple, list)):
            data = data[0]  # (x, y[, sample_weight]): the inputs
        return block_importance(self.model, data,
                                num_samples=int(self.score_options.get("num_samples", 256)))

    @staticmethod
    def _progress(line: str) -> None:
        print(f"tfprune: {line}", flush=True)

    def step(self, target, *, seed: int | None = None) -> PruningPlan:
        """Scores, then removes channels until ``target`` is met; returns the new plan.

        Args:
            target: The fraction of prunable channels removed in all (not just
                in this step), in [0, 1), or a budget dict ``{"flops": F}`` /
                ``{"params": P}``. Channels removed by earlier steps stay removed.
            seed: Seeds this step's samples (default: seed + number of steps done).
        """
        done = len(self.plan.history) if self.plan is not None else 0
        if (isinstance(target, (int, float)) and self.plan is not None
                and target < self.plan.fraction_removed - 1e-9 and not self._warned_below):
            self._warned_below = True
            warnings.warn(
                f"Pruner.step({target}): {self.plan.fraction_removed:.1%} of the channels are "
                "removed already, and removed channels stay removed; the target is a total, "
                "not a step, so this step removes nothing more.", UserWarning, stacklevel=2)
        scores = self.score(self.seed + done if seed is None else seed)
        self.plan = self.plan_for(scores, target, self.plan)
        return self.plan

    def apply(self) -> keras.Model:
        """Zeroes the removed channels of the model in place; returns it."""
        self._require_plan("apply")
        apply_plan(self.model, self.plan)
        return self.model

    def slim(self) -> keras.Model:
        """A new, smaller model with only the kept channels (``tfprune.slim``)."""
        from tfprune.slimming import slim

        self._require_plan("slim")
        return slim(self.model, self.plan)

    def _require_plan(self, what: str) -> None:
        if self.plan is None:
            raise ValueError(f"Pruner.{what}: no plan yet; call step(target) first.")
