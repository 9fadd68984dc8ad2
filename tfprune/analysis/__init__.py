"""The paper's analyses: training dynamics (Observations 2-4, Section 4.1) and run comparisons.

``analyze_training`` trains a config while ``DynamicsRecorder`` measures, per
epoch, the correlations behind Figs. 2, 3 and 31 and Section 4.1 and the
layer-wise gradient norms of Fig. 21; ``analyze_runs`` compares finished prune
runs (layer-wise pruning ratios, Figs. 16-20; train/test curves, Fig. 1).
Each writes PNG figures, CSV data and TensorBoard summaries. ``ScoreMonitor``
scores a model during any ``fit`` without pruning it (rankings and would-be masks).
"""

from tfprune.analysis.dynamics import DynamicsRecorder
from tfprune.analysis.runs import analyze_runs
from tfprune.analysis.score_monitor import ScoreMonitor
from tfprune.analysis.statistics import correlation
from tfprune.analysis.training import analyze_training, draw_dynamics

__all__ = ["DynamicsRecorder", "ScoreMonitor", "analyze_runs", "analyze_training",
           "correlation", "draw_dynamics"]
