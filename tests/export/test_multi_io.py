"""Models with several inputs and outputs: slimmed, exported, checked in LiteRT head by head."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.export import (
    export_tflite,
    litert_latency,
    run_tflite,
    run_tflite_for,
    verify_tflite,
)
from tfprune.export.deploy import export_and_verify
from tfprune.export.latency import keras_latency
from tfprune.export.model_io import litert_feed, named_outputs, output_names, random_inputs


def two_headed(output_kind):
    """An image and a token input; a classification head and a regression head.

    The list puts the heads in the reverse order of their layer names, and LiteRT
    orders its output tensors differently again, so a mapping by position would
    compare the wrong heads.
    """
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3), name="image")
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    t = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(10, 4)(tokens))
    x = keras.layers.Dense(16, activation="relu", name="hidden")(
        keras.layers.Concatenate()([x, t]))
    cls = keras.layers.Dense(3, name="cls")(x)
    reg = keras.layers.Dense(3, name="reg")(x)
    if output_kind == "dict":
        return keras.Model({"image": image, "tokens": tokens}, {"zz_class": cls, "aa_value": reg})
    return keras.Model([image, tokens], [reg, cls])


def inputs_for(model, count, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(count, 8, 8, 3)).astype("float32")
    tokens = rng.integers(0, 10, size=(count, 5)).astype("int32")
    if isinstance(model.input, dict):
        return {"image": image, "tokens": tokens}
    return [image, tokens]


@pytest.mark.parametrize("output_kind", ["dict", "list"])
def test_litert_outputs_are_matched_to_the_keras_heads_by_name(output_kind, tmp_path):
    model = two_headed(output_kind)
    small = tfprune.slim(model, tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5))
    path = export_tflite(small, tmp_path / "small.tflite")
    x = inputs_for(small, 6)
    litert = run_tflite(path, litert_feed(small, x))
    assert sorted(run_tflite_for(path, small, x)) == sorted(litert)
    keras_outputs = named_outputs(small, small.predict(x, verbose=0))
    expected_names = ["aa_value", "zz_class"] if output_kind == "dict" else ["output_0",
                                                                             "output_1"]
    assert sorted(litert) == sorted(keras_outputs) == expected_names
    for name in expected_names:  # each head against its own Keras head
        np.testing.assert_allclose(litert[name], keras_outputs[name], atol=1e-4)
    # Computed apart from any naming: the head the user put first ("reg" in the list).
    first = "aa_value" if output_kind == "dict" else "output_0"
    reg = keras.Model(small.inputs, small.get_layer("reg").output).predict(x, verbose=0)
    np.testing.assert_allclose(litert[first], reg, atol=1e-4)
    assert output_names(small) == expected_names

    check = verify_tflite(path, small, x)
    assert check.max_abs_diff <= 1e-4 and sorted(check.per_output) == expected_names
    assert check.top1_agreement == 1.0 and check.examples == 6


def test_a_wrong_feed_names_the_inputs(tmp_path):
    model = two_headed("list")
    path = export_tflite(model, tmp_path / "model.tflite")
    with pytest.raises(ValueError, match=r"2 inputs \(\['image', 'tokens'\]\)"):
        run_tflite(path, np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="has 2 input"):
        litert_feed(model, [np.zeros((1, 8, 8, 3), "float32")])


def test_quantized_multi_input_export_calibrates_and_is_judged_per_kind(tmp_path):
    model = two_headed("dict")
    report = export_and_verify(model, tmp_path / "int8.tflite", "int8",
                               representative_images=inputs_for(model, 16, seed=1),
                               images=inputs_for(model, 20, seed=2))
    assert report.verification.examples == 20
    assert np.isfinite(report.verification.max_abs_diff)
    assert report.criterion == "top-1 agreement >= 97%"  # the model has a class-score head
    assert "zz_class: max abs diff" in report.format()
    # Without labels nor images: random inputs for both (token ids 0 or 1).
    random = export_and_verify(model, tmp_path / "float.tflite", "none", examples=4)
    assert random.passed and random.inputs == "random" and random.keras_accuracy is None


def test_a_regression_only_model_is_judged_by_relative_error(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(16, "relu")(inputs)))
    x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
    report = export_and_verify(model, tmp_path / "dynamic.tflite", "dynamic", images=x)
    check = report.verification
    assert np.isnan(check.top1_agreement)  # one value per example: no classes to agree on
    assert report.criterion == "max abs diff <= 5% of the largest output"
    assert check.scale == pytest.approx(float(np.abs(model.predict(x, verbose=0)).max()))
    assert report.passed == (check.max_abs_diff <= 0.05 * check.scale)
    assert "top-1" not in report.format()
    assert report.as_dict()["verification"]["top1_agreement"] is None  # strict JSON: null


def test_latency_feeds_every_input(tmp_path):
    model = two_headed("list")
    x = random_inputs(model, 2)
    assert [a.dtype for a in x] == [np.float32, np.int32] and set(np.unique(x[1])) <= {0, 1}
    assert keras_latency(model, repeats=2, warmup=1).median_ms > 0
    path = export_tflite(model, tmp_path / "model.tflite")
    assert litert_latency(path, repeats=2, warmup=1).median_ms > 0


def test_check_model_compares_every_head():
    from tfprune.check import check_model

    model = two_headed("dict")
    x = inputs_for(model, 8)
    labels = {"zz_class": np.arange(8) % 3, "aa_value": np.zeros((8, 3), "float32")}
    model.compile("adam", {"zz_class": keras.losses.SparseCategoricalCrossentropy(True),
                           "aa_value": "mse"})
    check = check_model(model, x, labels, target=0.4, measure="snip")
    assert check.passed and check.params_after < check.params_before
