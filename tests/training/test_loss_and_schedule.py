import keras
import numpy as np
import pytest

from tfprune.training import EpochPhaseSchedule, TemperatureCrossEntropy, scale_phases


def test_temperature_cross_entropy_matches_hand_computation():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]], "float32")
    labels = np.array([2, 1])
    for temperature in (1.0, 5.0):
        scaled = logits / temperature
        log_softmax = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        expected = -log_softmax[np.arange(2), labels].mean()
        loss = TemperatureCrossEntropy(temperature)(labels, logits)
        assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_temperature_loss_serializes():
    loss = TemperatureCrossEntropy(7.0)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, TemperatureCrossEntropy) and restored.temperature == 7.0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemperatureCrossEntropy(0)


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [(160, [80, 40, 40]), (20, [10, 5, 5]), (4, [2, 1, 1]), (8, [4, 2, 2]), (1, [0, 1, 0]),
     (155, [78, 38, 39])],
)
def test_scale_phases_is_proportional_and_sums_to_epochs(epochs, expected):
    phases = scale_phases([80, 40, 40], epochs)
    assert phases == expected
    assert sum(phases) == epochs


def test_epoch_phase_schedule():
    schedule = EpochPhaseSchedule([0.1, 0.01, 0.001], [2, 1, 1])
    assert [schedule(e) for e in range(6)] == [0.1, 0.1, 0.01, 0.001, 0.001, 0.001]
    with pytest.raises(ValueError, match="one learning rate per phase"):
        EpochPhaseSchedule([0.1], [1, 2])
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        scale_phases([1], 0)
