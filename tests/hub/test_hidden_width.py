"""The hidden width as one channel group across the residual stream.

RMS normalizations divide by the mean over all their channels: a removed
channel is zero in the masked model but absent from the slimmed one, so the
slimmed norm's scale is multiplied by sqrt(d / k) and its epsilon by d / k.
Each check here compares the slimmed model with the masked one, computed by
Keras on the masked weights, and Gemma's generation token by token.
"""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tfprune.handlers.normalization import rms_form
from tfprune.pruning.axes import axis_of

TOKENS = {"token_ids": np.random.default_rng(0).integers(1, 50, (4, 9)),
          "padding_mask": np.array([[1] * 9, [1] * 5 + [0] * 4, [1] * 7 + [0] * 2, [1] * 9])}


def _gemma(key_value_heads=1):
    keras.utils.set_random_seed(3)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4,
        num_key_value_heads=key_value_heads, hidden_dim=16, intermediate_dim=32, head_dim=4)
    lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(1)
    for variable in lm.weights:  # norms away from their initial zeros, so they matter
        if "normalization" in variable.path:
            variable.assign(rng.normal(0.3, 0.4, variable.shape))
    return lm


def _masked(lm, plan, generate=True):
    """``(logits, greedy tokens or None)`` of ``lm`` under the plan's masks (weights restored)."""
    saved = lm.get_weights()
    tfprune.apply_plan(lm, plan)
    try:
        return np.asarray(lm(TOKENS)), _greedy(lm) if generate else None
    finally:
        lm.set_weights(saved)


def _greedy(lm):
    lm.compile(sampler="greedy")
    prompt = {"token_ids": TOKENS["token_ids"][:2],
              "padding_mask": np.array([[1] * 3 + [0] * 6, [1] * 4 + [0] * 5])}
    return np.asarray(lm.generate(prompt, stop_token_ids=None)["token_ids"])


def test_the_residual_stream_is_one_group_of_every_block_norm_and_the_tied_embedding():
    groups = tfprune.channel_groups(_gemma())
    (hidden,) = [group for group in groups if axis_of(group) == "hidden"]
    assert hidden.size == 16 and "token_embedding" in hidden.sources
    norms = [name for name in hidden.members if name.endswith("norm")]
    assert len(norms) == 4  # two per block; the final norm follows the stream too
    assert any(name.endswith("final_normalization") for name in hidden.members)


@pytest.mark.parametrize("axes", [("hidden",), ("heads", "mlp", "hidden")])
def test_a_gemma_slimmed_in_width_keeps_its_class_and_generates_as_masked(axes):
    lm = _gemma()
    scores = tfprune.score(lm, "magnitude")
    # scope="layer": every group loses its share, the residual stream too (in one global
    # ranking its scores, summed over its five writers, would keep it whole)
    plan = tfprune.make_plan(lm, scores, 0.25, axes=axes, uniform=True, gqa="heads",
                             scope="layer")
    expected, generated = _masked(lm, plan, generate="mlp" in axes)  # generate() once
    small = tfprune.slim(lm, plan)
    config = small.backbone.get_config()
    assert type(small) is keras_hub.models.GemmaCausalLM and config["hidden_dim"] == 12
    if "mlp" in axes:
        assert config["intermediate_dim"] < 32 and config["num_query_heads"] == 3
    assert type(small.backbone).from_config(config).get_config() == config
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-4 * np.abs(expected).max())
    if generated is not None:
        np.testing.assert_array_equal(_greedy(small), generated)


def test_the_flat_model_matches_the_masked_one_with_epsilon_rescaled():
    """A plan that is not uniform in its MLP units slims to a flat functional model: there the
    norms are rebuilt with epsilon times d / k, so the match is exact to float rounding."""
    lm = _gemma(key_value_heads=2)
    scores = tfprune.score(lm, "snip", (TOKENS, np.roll(TOKENS["token_ids"], -1, 1),
                                        TOKENS["padding_mask"]))
    plan = tfprune.make_plan(lm, scores, 0.3, axes=("mlp", "hidden"))
    expected, _ = _masked(lm, plan)
    with pytest.warns(UserWarning, match="flat functional model"):
        small = tfprune.slim(lm, plan)
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-5 * np.abs(expected).max())


def test_llama_keeps_its_hidden_width_and_says_why():
    keras.utils.set_random_seed(0)
    llama = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=1, num_query_heads=4,
                                           num_key_value_heads=2, hidden_dim=16,
                                           intermediate_dim=32)
    with pytest.raises(tfprune.pruning.PlanError, match="head size is computed as its input"):
        tfprune.make_plan(llama, tfprune.score(llama, "magnitude"), 0.25, axes=("hidden",))


def test_the_rms_form_is_read_by_calling_the_layer():
    def built(layer):
        layer.build((None, 6))
        layer.set_weights([np.linspace(0.5, 1.5, w.shape[0]) for w in layer.get_weights()])
        return layer

    gemma_norm = keras_hub.src.models.gemma.rms_normalization.RMSNormalization
    assert rms_form(built(keras.layers.RMSNormalization())) == "scale"
    assert rms_form(built(gemma_norm())) == "one_plus_scale"
    assert rms_form(built(keras.layers.LayerNormalization())) is None


def test_a_keras_rms_norm_between_dense_layers_slims_exactly():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, name="wide")(inputs)
    normed = keras.layers.RMSNormalization(epsilon=1e-2, name="norm")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(normed))
    model.get_layer("norm").set_weights([np.linspace(0.5, 2.0, 8)])
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    small = tfprune.slim(model, plan)
    tfprune.apply_plan(model, plan)
    assert small.get_layer("norm").epsilon == pytest.approx(2e-2)  # 8 channels, 4 kept
    np.testing.assert_allclose(small(x), model(x), rtol=1e-5, atol=1e-6)
