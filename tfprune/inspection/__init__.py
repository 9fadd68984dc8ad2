"""TensorBoard inspection of pruning rounds.

``round_figures`` draws labelled figures; ``round_summaries`` writes what
``PruningCallback`` logs each round.
"""
