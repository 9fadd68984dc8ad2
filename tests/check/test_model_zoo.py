"""Hand-written models of the kinds users ship, through tfprune end to end (tfprune.check).

Each model is pruned by 40% of its channels; the slimmed model must have fewer
parameters and match the masked model within 1e-4 of the output's scale, after
BatchNorm statistics were set from the inputs.
"""

import keras
import numpy as np
import pytest
from zoo_models import (
    einsum_mlp,
    group_norm_cnn,
    grouped_conv_cnn,
    keyword_spotter,
    nested_backbone,
    ops_model,
    resnext_gn,
    sequential_cnn,
    transformer,
    unet,
    vit,
)

import tfprune
from tfprune.check import check_model


def images(shape, count=16, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype("float32")


def labels(count=16, classes=3):
    return np.arange(count) % classes


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
    # whole heads, MLP units, and the residual stream (the embedding, the attention's and the
    # MLP's outputs) through its LayerNorms
    assert sources(transformer()) == {"attention/heads", "mlp_in", "embed", "attention",
                                      "mlp_out"}
    assert sources(einsum_mlp()) == {"mlp_in"}  # "heads" (abc,cde->abde) is kept whole
    assert sources(group_norm_cnn()) == {"c1", "c2", "c3"}  # c1 in whole GroupNorm groups
    assert sources(grouped_conv_cnn()) == {"c1", "grouped", "c3"}  # evenly per conv group
    assert sources(vit()) == {"attention0/heads", "mlp0", "attention1/heads", "mlp1",
                              "patchify", "attention0", "mlp0_out", "attention1", "mlp1_out"}
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


# EfficientNetB0 (squeeze-excite, swish, as MobileNetV3Small here) is slimmed and compared
# with its masked model in tests/slimming/test_slim.py; one application end to end suffices.
@pytest.mark.parametrize("application", ["MobileNetV3Small"])
def test_keras_applications_end_to_end_with_litert(application):
    model = getattr(keras.applications, application)(
        weights=None, classes=10, input_shape=(32, 32, 3), classifier_activation=None)
    check = check_model(model, images((32, 32, 3), count=8) * 60 + 120, labels(8, 10))
    assert check.passed, check
