"""The paper's training loss (defined in ``tfprune.losses``, which the core library uses too)."""

from tfprune.losses import TemperatureCrossEntropy, training_temperature

__all__ = ["TemperatureCrossEntropy", "training_temperature"]
