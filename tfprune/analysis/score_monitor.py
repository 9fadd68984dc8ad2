"""``ScoreMonitor``: watch importance rankings settle during any ``model.fit``, without pruning.

Every ``every`` epochs it scores the model (the same scoring path as
``PruningCallback``) and logs to TensorBoard, under ``monitor/``:

- ``scores/<layer>``: the per-layer score histograms, and the ``pruning/scores``
  figure of their distributions;
- ``rank_correlation/<layer>``: Spearman correlation of the layer's scores
  with the previous scoring's (how much the ranking still moves);
- ``mask_distance``: the fraction of channels whose would-be mask at
  ``target`` changed since the previous scoring (the early-bird signal of
  Section 4.2 / Fig. 2: it falls toward 0 as the masks settle).

What a user watches to decide when to prune. The values are also kept in
``history`` (one dict per scoring).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from tfprune.importance import ScoringContext
from tfprune.importance.measure_registry import measure_for_model
from tfprune.inspection import round_figures as figures
from tfprune.pruning.plan import make_plan


def spearman(a, b) -> float:
    """Spearman correlation of two score arrays; nan when either is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b)[0])


class ScoreMonitor(keras.callbacks.Callback):
    """Scores every ``every`` epochs and logs how the ranking and the would-be masks move.

    Args:
        measure: An importance measure (name, config dict or object); by name,
            g-based measures take the model's compiled training temperature.
        data: What ``tfprune.score`` takes (arrays, a dataset, a DataBundle).
        every: Score after every this many epochs (and before the first).
        target: The fraction of channels the would-be masks remove.
        log_dir: TensorBoard folder (None: only ``history``).
        score_options: Passed to ``ScoringContext`` (num_samples, ...).
        seed: Seeds the scoring samples (the same samples every time).

    Example:
        >>> monitor = tfprune.ScoreMonitor("proposed", (x, y), every=1, target=0.5,
        ...                                log_dir="runs/monitor")
        >>> model.fit(x, y, epochs=10, callbacks=[monitor])
        >>> [h["mask_distance"] for h in monitor.history]
    """

    def __init__(self, measure, data, *, every: int = 1, target: float = 0.5, log_dir=None,
                 score_options=None, seed: int = 0):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        if not 0 < target < 1:
            raise ValueError(f"target must be in (0, 1), got {target}.")
        self.measure_spec = measure
        self.data = data
        self.every = int(every)
        self.target = float(target)
        self.log_dir = log_dir
        self.score_options = dict(score_options or {})
        self.seed = int(seed)
        self.history: list[dict] = []
        self._previous = None
        self._writer = None

    def on_train_begin(self, logs=None):
        """Resolves the measure and scores the starting point (epoch 0 of this fit)."""
        self.measure = measure_for_model(self.measure_spec, self.model)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir))
        self._observe(0)

    def on_epoch_end(self, epoch, logs=None):
        """Scores after every ``every`` epochs."""
        if (epoch + 1) % self.every == 0:
            self._observe(epoch + 1)

    def _observe(self, epoch: int) -> None:
        context = ScoringContext(self.model, self.data, seed=self.seed, **self.score_options)
        scores = self.measure.score(context)
        mask = np.concatenate([m.ravel() for m in make_plan(self.model, scores,
                                                            self.target).keep.values()])
        entry = {"epoch": epoch, "rank_correlation": {}, "mask_distance": float("nan")}
        if self._previous is not None:
            old_scores, old_mask = self._previous
            entry["rank_correlation"] = {name: spearman(scores[name], old_scores[name])
                                         for name in scores if name in old_scores}
            entry["mask_distance"] = float(np.mean(mask != old_mask))
        self.history.append(entry)
        self._previous = (scores, mask)
        self._write(epoch, scores, entry)

    def _write(self, epoch: int, scores, entry: dict) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=epoch):
            for name, values in scores.items():
                tf.summary.histogram(f"monitor/scores/{name}", np.ravel(values))
            for name, value in entry["rank_correlation"].items():
                if np.isfinite(value):
                    tf.summary.scalar(f"monitor/rank_correlation/{name}", value)
            if np.isfinite(entry["mask_distance"]):
                tf.summary.scalar("monitor/mask_distance", entry["mask_distance"])
            pages = figures.scores_figure(scores, epoch)
            tf.summary.image("monitor/scores", pages, max_outputs=len(pages))
        self._writer.flush()

    def on_train_end(self, logs=None):
        """Flushes the summaries."""
        if self._writer is not None:
            self._writer.flush()
