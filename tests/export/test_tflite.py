import keras
import numpy as np
import pytest

import tfprune
from tfprune.export import export_tflite, verify_tflite


@pytest.fixture(scope="module")
def slim_model():
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    return tfprune.slim(model, plan)


@pytest.fixture(scope="module")
def plain_export(slim_model, tmp_path_factory):
    return export_tflite(slim_model, tmp_path_factory.mktemp("export") / "plain.tflite")


def images(count, seed=0):
    return np.random.default_rng(seed).normal(size=(count, 32, 32, 3)).astype("float32")


def test_float_export_matches_keras_in_litert(slim_model, plain_export):
    result = verify_tflite(plain_export, slim_model, images(8))
    assert result.max_abs_diff <= 1e-3 and result.top1_agreement == 1.0


@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_quantized_exports_run_and_shrink(slim_model, plain_export, tmp_path, quantize):
    path = export_tflite(slim_model, tmp_path / f"{quantize}.tflite", quantize,
                         representative_images=images(32, seed=1))
    assert path.stat().st_size < plain_export.stat().st_size
    result = verify_tflite(path, slim_model, images(16, seed=2))
    assert np.isfinite(result.max_abs_diff) and result.examples == 16
    if quantize == "float16":
        assert result.max_abs_diff <= 1e-2


def test_bad_requests_fail_clearly(slim_model, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        export_tflite(slim_model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="needs representative_images"):
        export_tflite(slim_model, tmp_path / "m.tflite", "int8")


def test_a_string_input_model_gets_litert_error_naming_its_string_ops(tmp_path):
    import tensorflow as tf

    from tfprune.export.tflite import LiteRTError

    vectorizer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=4)
    vectorizer.adapt(["a b c", "b c d", "e f a"])
    inputs = keras.Input((1,), dtype="string")
    x = keras.layers.Embedding(20, 4)(vectorizer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    path = export_tflite(model, tmp_path / "text.tflite")
    with pytest.raises(LiteRTError, match=r"text.tflite: .*\(FlexStringLower\).*Text "
                                          r"preprocessing \(TextVectorization"):
        verify_tflite(path, model, tf.constant([["a b"], ["c d"]]))


class PythonBranch(keras.layers.Layer):
    """Branches in Python on a tensor's value, as keras-hub's Qwen3.5 gated delta net does."""

    def call(self, x):
        if keras.ops.sum(x) > 0:
            return x * 2.0
        return x

    def compute_output_shape(self, shape):
        return shape


@pytest.mark.parametrize("quantize", ["none", "dynamic"])
def test_a_model_that_cannot_run_in_a_graph_gets_litert_error_naming_its_layer(tmp_path,
                                                                               quantize):
    from tfprune.export.tflite import LiteRTError

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(PythonBranch()(inputs)))
    assert tuple(model(np.ones((2, 4))).shape) == (2, 2)  # it runs eagerly
    with pytest.raises(LiteRTError, match="branch.tflite: the model cannot be traced into a "
                                          "TensorFlow graph.*PythonBranch's call"):
        export_tflite(model, tmp_path / "branch.tflite", quantize=quantize)
    assert not (tmp_path / "branch.tflite").exists()  # nothing half-written
