"""Many runs and what they add up to: resumable grids over configs and seeds, paper tables."""

from tfprune.study.grid import GridItem, grid_items, run_grid
from tfprune.study.records import RunRecord, collect_runs, measure_label
from tfprune.study.report import build_report

__all__ = ["GridItem", "RunRecord", "build_report", "collect_runs", "grid_items",
           "measure_label", "run_grid"]
