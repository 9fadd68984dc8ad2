"""A check several test modules share: slim equals masked, and the slimmed model reloads."""

import keras
import numpy as np

import tfprune
from tfprune.model_files import load_model_file


def assert_slims_as_masked_and_reloads(model, data, tmp_path, target=0.5, **options):
    """Plans ``target`` by magnitude; the slimmed model predicts as the masked one, and reloads.

    Args:
        model: The model to prune.
        data: Inputs to predict on (other sizes than the trace's, where possible).
        tmp_path: Where the slimmed model is saved.
        target: ``make_plan``'s target.
        **options: ``make_plan``'s options (``ignored_layers``).

    Returns:
        The slimmed model.
    """
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), target, **options)
    assert plan.removed > 0
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.count_params() < model.count_params()
    np.testing.assert_allclose(slimmed.predict(data, verbose=0),
                               masked.predict(data, verbose=0), atol=1e-5)
    slimmed.save(tmp_path / "slim.keras")
    np.testing.assert_array_equal(load_model_file(tmp_path / "slim.keras").predict(
        data, verbose=0), slimmed.predict(data, verbose=0))
    return slimmed
