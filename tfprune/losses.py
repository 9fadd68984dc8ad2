"""Cross-entropy on logits divided by a temperature, as the paper's training uses (T = 5)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfprune")
class TemperatureCrossEntropy(keras.losses.Loss):
    """Sparse categorical cross-entropy of ``softmax(logits / temperature)``.

    Args:
        temperature: T > 0; T = 1 is plain cross-entropy on logits.
        name: The loss' name.
        **kwargs: Passed to ``keras.losses.Loss`` (e.g. ``reduction``).

    Example:
        >>> loss = TemperatureCrossEntropy(temperature=5.0)
        >>> model.compile(optimizer="sgd", loss=loss, metrics=["accuracy"])
    """

    def __init__(self, temperature: float = 5.0, name="temperature_cross_entropy", **kwargs):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        """Per-example loss of integer labels ``y_true`` and logits ``y_pred``."""
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred / self.temperature, from_logits=True
        )

    def get_config(self):
        """Returns the loss' config for serialization."""
        return {**super().get_config(), "temperature": self.temperature}


def training_temperature(model: keras.Model) -> float:
    """The temperature the model is compiled with: ``TemperatureCrossEntropy``'s T, else 1."""
    loss = getattr(model, "loss", None)
    return float(loss.temperature) if isinstance(loss, TemperatureCrossEntropy) else 1.0
