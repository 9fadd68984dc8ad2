"""Scoring traces its functions once per model: a second score, or a later pruning round
inside fit, reuses the gradient functions and the BatchNorm-mode check."""

import keras
import numpy as np

import tfprune
from tfprune.importance.context import _ESTIMATORS
from tfprune.model_cache import model_cache
from tfprune.pruning.tfmot_schedules import RoundsSchedule


def _model_and_data():
    keras.utils.set_random_seed(0)
    model = tfprune.models.build("vgg11", width_multiplier=0.125, num_classes=10)
    x = np.random.default_rng(0).normal(size=(80, 32, 32, 3)).astype("float32")
    return model, x, np.arange(80) % 10


def _traces(model) -> tuple[int, int]:
    spread = model_cache(model)["spread_passes"]
    return (sum(f.experimental_get_tracing_count() for f in spread.values()),
            _ESTIMATORS[model]._gradient_fn.experimental_get_tracing_count())


def test_scoring_twice_traces_once():
    model, x, y = _model_and_data()
    first = tfprune.score(model, "snip", (x, y), num_samples=80, batch_size=32)
    after_first = _traces(model)
    second = tfprune.score(model, "snip", (x, y), num_samples=80, batch_size=32)
    assert _traces(model) == after_first
    assert after_first[0] == 1  # the BatchNorm-mode check: one compiled pass
    for layer in first:
        np.testing.assert_allclose(second[layer], first[layer], rtol=1e-6)


def test_later_rounds_inside_fit_add_no_trace():
    model, x, y = _model_and_data()
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    callback = tfprune.pruning.PruningCallback(
        "snip", RoundsSchedule(0.5, rounds=3), (x, y), verbose=0,
        score_options={"num_samples": 80, "batch_size": 32})
    counts = []

    class Count(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # after the callback's check
            counts.append(_traces(model))

        def on_epoch_end(self, epoch, logs=None):
            counts.append(_traces(model))

    model.fit(x, y, epochs=3, batch_size=40, verbose=0, callbacks=[callback, Count()])
    assert abs(callback.plan.fraction_removed - 0.5) < 0.02
    # The check before training traced the rounds' own functions: no round adds a trace.
    assert counts[0] == counts[1] == counts[-1], counts


def test_the_batchnorm_mode_is_decided_once_per_weights(monkeypatch):
    from tfprune.importance import context

    calls = []
    original = context.inference_spread

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(context, "inference_spread", counting)
    model, x, y = _model_and_data()
    first = tfprune.score(model, "snip", (x, y), num_samples=80, batch_size=32)
    # another measure on the same weights and samples: no second check
    tfprune.score(model, "loss_preservation", (x, y), num_samples=80, batch_size=32)
    assert len(calls) == 1
    layer = model.get_layer(next(iter(first)))
    layer.kernel.assign(layer.kernel * 1.5)  # other weights: decided again
    tfprune.score(model, "snip", (x, y), num_samples=80, batch_size=32)
    assert len(calls) == 2
