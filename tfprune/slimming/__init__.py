"""Physically smaller models: ``slim(model, plan)`` rebuilds a model without removed channels."""

from tfprune.slimming.depth import drop_blocks
from tfprune.slimming.slim import SlimContext, slim

__all__ = ["SlimContext", "drop_blocks", "slim"]
