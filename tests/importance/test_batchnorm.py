"""BN recalibration against batch statistics computed independently, and exact restoration."""

import keras
import numpy as np

from tfprune.importance.batchnorm import batch_norm_layers, recalibrated_batchnorm


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    inner = keras.Sequential([keras.layers.Dense(4, name="dense"),
                              keras.layers.BatchNormalization(name="inner_bn")], name="inner")
    x = inner(keras.layers.Flatten()(keras.layers.ReLU()(x)))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_moving_statistics_become_the_mean_batch_statistics_and_are_restored():
    model = _model()
    rng = np.random.default_rng(1)
    batches = [(rng.normal(2.0, 3.0, (8, 6, 6, 2)).astype("float32"), None) for _ in range(3)]
    bn = model.get_layer("bn")
    assert [layer.name for layer in batch_norm_layers(model)] == ["bn", "inner_bn"]
    before = [v.numpy().copy() for v in model.weights]
    conv_out = keras.Model(model.inputs, model.get_layer("conv").output)
    means = [conv_out(x).numpy().mean(axis=(0, 1, 2)) for x, _ in batches]
    variances = [conv_out(x).numpy().var(axis=(0, 1, 2)) for x, _ in batches]
    x0 = batches[0][0]
    degenerate = model(x0, training=False).numpy()
    with recalibrated_batchnorm(model, batches):
        np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(means, 0), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean(variances, 0),
                                   rtol=1e-3)
        recalibrated = model(x0, training=False).numpy()
    assert not np.allclose(recalibrated, degenerate, atol=1e-3)
    for saved, variable in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(saved, variable.numpy())
    assert bn.momentum == 0.99


def test_restored_even_when_the_block_raises():
    model = _model()
    bn = model.get_layer("bn")
    mean = bn.moving_mean.numpy().copy()
    try:
        with recalibrated_batchnorm(model, [np.ones((2, 6, 6, 2), "float32")]):
            assert not np.array_equal(bn.moving_mean.numpy(), mean)
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)


def _stale_statistics_model():
    """A small BN CNN whose moving statistics are far from its activations' real ones."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for i in range(3):
        x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name=f"c{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    for layer in model.layers:  # as after a few steps with momentum 0.99: stats barely moved,
        if isinstance(layer, keras.layers.BatchNormalization):  # variances huge vs reality
            layer.moving_variance.assign(np.full(8, 1e8, "float32"))
    return model


def test_auto_recalibrates_a_degenerate_inference_mode_and_records_it():
    import tfprune
    from tfprune.importance import ScoringContext, get_measure

    model = _stale_statistics_model()
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 8, 8, 3)).astype("float32"), np.arange(32) % 4)
    variances = [v.numpy().copy() for v in model.weights if "moving_variance" in v.path]
    auto = ScoringContext(model, data, num_samples=32)
    scores = get_measure("proposed").score(auto)
    assert auto.batchnorm_used.startswith("recalibrated (auto")
    assert scores.metadata["batchnorm"] == auto.batchnorm_used
    forced = get_measure("proposed").score(ScoringContext(model, data, num_samples=32,
                                                          batchnorm="recalibrate"))
    paper = get_measure("proposed").score(ScoringContext(model, data, num_samples=32,
                                                         batchnorm="inference"))
    for layer in scores:
        np.testing.assert_allclose(scores[layer], forced[layer], rtol=1e-6)
    # inference mode squashes the signal by orders of magnitude (1e8 variances)
    assert np.max(paper["c0"]) < 1e-3 * np.max(scores["c0"])
    # the model's own statistics are untouched
    after = [v.numpy() for v in model.weights if "moving_variance" in v.path]
    for a, b in zip(variances, after, strict=True):
        np.testing.assert_array_equal(a, b)
    plan = tfprune.make_plan(model, scores, 0.3)
    assert plan.settings["batchnorm"].startswith("recalibrated")


def test_a_healthy_model_stays_in_inference_mode():
    from tfprune.importance import ScoringContext, get_measure

    model = _stale_statistics_model()
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(32, 8, 8, 3)).astype("float32"), np.arange(32) % 4)
    from tfprune.importance.batchnorm import recalibrate_batchnorm

    recalibrate_batchnorm(model, [data])
    context = ScoringContext(model, data, num_samples=32)
    get_measure("snip").score(context)
    assert context.batchnorm_used == "inference"
