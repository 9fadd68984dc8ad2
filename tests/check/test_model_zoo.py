"""Hand-written models of the kinds users ship, through tfprune end to end (tfprune.check).

Each model is pruned by 40% of its channels; the slimmed model must have fewer
parameters and match the masked model within 1e-4 of the output's scale, after
BatchNorm statistics were set from the inputs.
"""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.check import check_model


def images(shape, count=16, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype("float32")


def labels(count=16, classes=3):
    return np.arange(count) % classes


def unet():
    inputs = keras.Input((16, 16, 3))
    down1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="down1")(inputs)
    x = keras.layers.MaxPooling2D()(down1)
    down2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="down2")(x)
    x = keras.layers.MaxPooling2D()(down2)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="bottom")(x)
    x = keras.layers.Conv2DTranspose(16, 2, strides=2, name="up2")(x)
    x = keras.layers.Concatenate()([x, down2])
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="dec2")(x)
    x = keras.layers.UpSampling2D()(x)
    x = keras.layers.Concatenate()([x, down1])
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="pixels")(x))


def keyword_spotter():
    inputs = keras.Input((40, 10))
    x = inputs
    for i, width in enumerate((16, 24, 32)):
        x = keras.layers.Conv1D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling1D()(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def transformer():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(inputs)
    attention = keras.layers.MultiHeadAttention(4, 4, name="attention")(x, x)
    x = keras.layers.LayerNormalization(name="ln1")(x + attention)
    hidden = keras.layers.Dense(32, activation="gelu", name="mlp_in")(x)
    x = keras.layers.LayerNormalization(name="ln2")(x + keras.layers.Dense(16, name="mlp_out")(
        hidden))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def einsum_mlp():
    """A transformer block whose MLP is written with EinsumDense, beside an attention-style
    EinsumDense with a head axis (kept whole)."""
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(inputs)
    heads = keras.layers.EinsumDense("abc,cde->abde", output_shape=(12, 2, 8), bias_axes="de",
                                     name="heads")(x)
    x = x + keras.layers.Reshape((12, 16))(heads)
    hidden = keras.layers.EinsumDense("abc,cd->abd", output_shape=(12, 32), bias_axes="d",
                                      activation="gelu", name="mlp_in")(x)
    x = x + keras.layers.EinsumDense("abc,cd->abd", output_shape=(12, 16), name="mlp_out")(
        hidden)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def group_norm_cnn():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.GroupNormalization(groups=4, name="gn")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c3")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def grouped_conv_cnn():
    inputs = keras.Input((12, 12, 4))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, groups=2, activation="relu", name="grouped")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c3")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x)))


def vit():
    """A pre-LayerNorm vision transformer: patches, positions, attention and MLP blocks."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Reshape((16, 16))(keras.layers.Conv2D(16, 4, strides=4, name="patchify")(
        inputs))
    x = x + keras.layers.Embedding(16, 16, name="positions")(keras.ops.arange(16)[None])
    for b in range(2):
        y = keras.layers.LayerNormalization(name=f"ln{b}a")(x)
        x = x + keras.layers.MultiHeadAttention(4, 4, name=f"attention{b}")(y, y)
        y = keras.layers.Dense(32, activation="gelu", name=f"mlp{b}")(
            keras.layers.LayerNormalization(name=f"ln{b}b")(x))
        x = x + keras.layers.Dense(16, name=f"mlp{b}_out")(y)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def resnext_gn():
    """ResNeXt-style residual blocks: GroupNorm on the stream, grouped 3x3 convs."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name="stem")(inputs)
    x = keras.layers.GroupNormalization(8, name="stem_gn")(x)
    for b in range(2):
        y = keras.layers.Conv2D(16, 1, name=f"b{b}_reduce")(x)
        y = keras.layers.ReLU()(keras.layers.GroupNormalization(4, name=f"b{b}_gn")(y))
        y = keras.layers.Conv2D(16, 3, padding="same", groups=4, name=f"b{b}_grouped")(y)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"b{b}_bn")(y))
        x = keras.layers.ReLU()(x + keras.layers.Conv2D(32, 1, name=f"b{b}_expand")(y))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


def ops_model():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.ops.relu(x) * 0.5
    y = keras.layers.Conv2D(8, 1, name="c2")(x)
    x = keras.ops.mean(keras.ops.maximum(x, y) + 1.0, axis=[1, 2])
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def sequential_cnn():
    return keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Conv2D(16, 3),
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])


def nested_backbone():
    backbone = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              include_top=False, alpha=0.35)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    x = keras.layers.Dense(16, activation="relu", name="head")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


#: name -> (builder, gradient measure or None when the default classification loss does not
#: fit the model's output, e.g. per-pixel logits).
MODELS = {"unet": (unet, None), "keyword_spotter": (keyword_spotter, "snip"),
          "transformer": (transformer, "snip"), "group_norm_cnn": (group_norm_cnn, "snip"),
          "einsum_mlp": (einsum_mlp, "snip"),
          "grouped_conv_cnn": (grouped_conv_cnn, "snip"), "ops_model": (ops_model, "snip"),
          "resnext_gn": (resnext_gn, "proposed"), "vit": (vit, "snip"),
          "sequential_cnn": (sequential_cnn, "snip"), "nested_backbone": (nested_backbone, "snip")}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_prunes_slims_and_matches_the_masked_model(name):
    builder, measure = MODELS[name]
    keras.utils.set_random_seed(0)
    model = builder()
    shape = tuple(model.inputs[0].shape[1:])
    if model.inputs[0].dtype.startswith("int"):
        x = np.random.default_rng(0).integers(0, 50, size=(16, *shape)).astype("int32")
    else:
        x = images(shape)
    check = check_model(model, x, labels(), measure=measure or "magnitude", tflite=False)
    assert check.params_after < check.params_before, check
    assert check.slim_error <= 1e-4 and check.output_scale > 1e-3, check


def test_what_each_hand_written_model_prunes():
    def sources(model):
        return {name for g in tfprune.channel_groups(model) for name in g.sources}

    assert sources(unet()) == {"down1", "down2", "bottom", "up2", "dec2", "dec1"}
    # whole heads and MLP units; the residual stream meets LayerNorm
    assert sources(transformer()) == {"attention/heads", "mlp_in"}
    assert sources(einsum_mlp()) == {"mlp_in"}  # "heads" (abc,cde->abde) is kept whole
    assert sources(group_norm_cnn()) == {"c1", "c2", "c3"}  # c1 in whole GroupNorm groups
    assert sources(grouped_conv_cnn()) == {"c1", "grouped", "c3"}  # evenly per conv group
    assert sources(vit()) == {"attention0/heads", "mlp0", "attention1/heads", "mlp1"}
    nested = sources(nested_backbone())
    assert "head" in nested and "Conv1" in nested


def test_transformer_loses_whole_heads_and_mlp_units(tmp_path):
    model = transformer()
    x = np.random.default_rng(0).integers(0, 50, size=(16, 12)).astype("int32")
    scores = tfprune.score(model, "snip", (x, labels()), samples_per_class=4)
    slimmed = tfprune.slim(model, tfprune.make_plan(model, scores, 0.4, scope="layer"))
    assert slimmed.get_layer("attention").num_heads < 4
    assert slimmed.get_layer("mlp_in").units < 32
    from tfprune.export.tflite import export_tflite, run_tflite

    path = export_tflite(slimmed, tmp_path / "transformer.tflite")
    np.testing.assert_allclose(run_tflite(path, x[:4]), slimmed(x[:4]), atol=1e-4)


def test_nested_backbone_slims_into_one_flat_model():
    model = nested_backbone()
    scores = tfprune.score(model, "magnitude")
    slimmed = tfprune.slim(model, tfprune.make_plan(model, scores, 0.3))
    assert not any(isinstance(layer, keras.Model) for layer in slimmed.layers)
    assert slimmed.count_params() < model.count_params()


def test_ignored_layer_is_copied_unchanged_by_slim():
    model = unet()
    scores = tfprune.score(model, "magnitude")
    plan = tfprune.make_plan(model, scores, 0.4, ignored_layers=["up2"])
    slimmed = tfprune.slim(model, plan)
    np.testing.assert_array_equal(slimmed.get_layer("up2").kernel.numpy(),
                                  model.get_layer("up2").kernel.numpy())


@pytest.mark.parametrize("application", ["MobileNetV3Small", "EfficientNetB0"])
def test_keras_applications_end_to_end_with_litert(application):
    model = getattr(keras.applications, application)(
        weights=None, classes=10, input_shape=(32, 32, 3), classifier_activation=None)
    check = check_model(model, images((32, 32, 3), count=8) * 60 + 120, labels(8, 10))
    assert check.passed, check
