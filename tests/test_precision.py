"""Mixed-precision models: scored and exported through their float32 copy, so half
precision neither zeroes GraSP's scores nor leaves LiteRT without a kernel."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.precision import float32_model, low_precision_layers

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 12, 12, 3)).astype("float32")
Y = np.arange(40) % 4


def cnn(policy: str) -> keras.Model:
    """conv -> BN -> conv (a nested backbone) -> pooling -> softmax head, built under ``policy``."""
    keras.utils.set_random_seed(0)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        backbone = keras.Sequential([
            keras.Input((12, 12, 3), name="frames"), keras.layers.Conv2D(8, 3, name="conv1"),
            keras.layers.BatchNormalization(name="bn1"), keras.layers.ReLU(name="relu1")],
            name="backbone")
        inputs = keras.Input((12, 12, 3), name="image")
        x = keras.layers.Conv2D(12, 3, activation="relu", name="conv2")(backbone(inputs))
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        outputs = keras.layers.Dense(4, activation="softmax", dtype="float32", name="head")(x)
        model = keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.config.set_dtype_policy(previous)
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_scores_as_its_float32_twin(policy):
    mixed, reference = cnn(policy), cnn("float32")
    reference.set_weights(mixed.get_weights())
    assert "conv1" in low_precision_layers(mixed) and not low_precision_layers(reference)
    for measure in ("grasp", "proposed", "snip"):  # GraSP at T=200: Hg ~ 1e-9, 0 in float16
        scores = tfprune.score(mixed, measure, (X, Y), num_samples=40)
        expected = tfprune.score(reference, measure, (X, Y), num_samples=40)
        for name in expected:
            assert np.ptp(expected[name]) > 0
            np.testing.assert_allclose(scores[name], expected[name], rtol=1e-5, atol=1e-15)


def test_the_float32_copy_keeps_the_names_weights_and_nesting():
    mixed = cnn("mixed_float16")
    copy = float32_model(mixed)
    assert copy is not mixed and float32_model(copy) is copy
    assert not low_precision_layers(copy)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in mixed.layers]
    assert copy.get_layer("backbone").get_layer("conv1").compute_dtype == "float32"
    assert [t.name for t in copy.inputs] == [t.name for t in mixed.inputs]
    for ours, theirs in zip(copy.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(copy(X[:4]), mixed(X[:4]), atol=5e-3)


def test_a_mixed_bfloat16_model_prunes_slims_and_runs_in_litert(tmp_path):
    from tfprune.export import export_tflite, verify_tflite

    mixed = cnn("mixed_bfloat16")
    pruner = tfprune.Pruner(mixed, "grasp_abs", (X, Y), score_options={"num_samples": 40})
    plan = pruner.step(0.5)
    slimmed = tfprune.slim(mixed, plan)
    assert slimmed.get_layer("conv1").compute_dtype == "bfloat16"  # slim keeps the policy
    check = verify_tflite(export_tflite(slimmed, tmp_path / "mixed.tflite"), slimmed, X[:4])
    assert check.max_abs_diff <= 1e-4 and check.top1_agreement == 1.0


def test_the_float32_copy_keeps_an_adapted_vocabulary():
    words = np.array([["a", "b", "c"], ["d", "a", "zz"]] * 3)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        lookup = keras.layers.StringLookup()
        lookup.adapt(words)
        inputs = keras.Input((3,), dtype="string")
        x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(8, 4)(lookup(inputs)))
        model = keras.Model(inputs, keras.layers.Dense(2, dtype="float32")(x))
    finally:
        keras.config.set_dtype_policy(previous)
    np.testing.assert_allclose(float32_model(model)(words), model(words), atol=5e-3)
    assert float32_model(model).layers[1].get_vocabulary() == lookup.get_vocabulary()


def test_export_and_verify_checks_a_mixed_model_against_its_float32_computation(tmp_path):
    from tfprune.export.deploy import export_and_verify

    report = export_and_verify(cnn("mixed_bfloat16"), tmp_path / "mixed.tflite", images=X[:8],
                               labels=Y[:8])
    assert report.passed and report.verification.max_abs_diff <= 1e-5
