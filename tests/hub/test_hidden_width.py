"""The hidden width as one channel group across the residual stream.

RMS normalizations divide by the mean over all their channels: a removed
channel is zero in the masked model but absent from the slimmed one, so the
slimmed norm's scale is multiplied by sqrt(d / k) and its epsilon by d / k.
LayerNormalizations also subtract the mean: the slimmed one is a
KeptChannelsLayerNormalization, which computes the statistics of all d
channels from the k kept. Each check here compares the slimmed model with the
masked one, computed by Keras on the masked weights, and Gemma's generation
token by token.
"""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tfprune.handlers.normalization import rms_form
from tfprune.hub_objects import HeadSizedLlamaAttention
from tfprune.keras_objects import KeptChannelsLayerNormalization
from tfprune.model_files import ModelFileError, load_model_file
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


@pytest.mark.parametrize("gqa", ["groups", "heads"])
def test_a_llama_losing_heads_and_hidden_width_keeps_its_head_size_and_reloads(gqa, tmp_path):
    """Llama derives its head size from its input width and head count: slim pins it."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.LlamaBackbone(vocabulary_size=50, num_layers=2,
                                              num_query_heads=4, num_key_value_heads=2,
                                              hidden_dim=16, intermediate_dim=32)
    lm = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.0, gqa=gqa)
    for group in tfprune.channel_groups(lm, gqa=gqa):
        keep = plan.keep[str(group.index)]
        if axis_of(group) == "hidden":
            keep[[1, 6, 7, 12]] = False  # 12 of 16 channels
        elif group.sources[0].endswith("transformer_layer_0/self_attention/" + (
                "query_groups" if gqa == "groups" else "query_heads")):
            keep[:] = [False, True] if gqa == "groups" else [True, False, True, False]
    expected, _ = _masked(lm, plan, generate=False)
    with pytest.warns(UserWarning, match="flat functional model"):
        small = tfprune.slim(lm, plan)
    attention = [layer for layer in small._flatten_layers()
                 if isinstance(layer, HeadSizedLlamaAttention)]
    assert len(attention) == 2 and all(layer.head_dim == 4 for layer in attention)
    assert sorted(layer.num_query_heads for layer in attention) == [2, 4]
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-5 * np.abs(expected).max())
    small.save(tmp_path / "llama.keras")
    reloaded = load_model_file(tmp_path / "llama.keras")
    np.testing.assert_allclose(reloaded(TOKENS), small(TOKENS), rtol=1e-6, atol=1e-6)


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


def test_a_kept_channels_layer_norm_equals_a_layer_norm_over_the_zero_padded_width():
    """Against NumPy's LayerNorm of the full vector, zeros in the removed channels."""
    rng = np.random.default_rng(0)
    kept = np.array([0, 2, 3, 6])  # 4 of 7 channels
    x = rng.normal(0.7, 1.3, (5, 3, 4)).astype("float32")
    gamma, beta = rng.normal(1, 0.3, 4), rng.normal(0, 0.3, 4)
    layer = KeptChannelsLayerNormalization(full_width=7, epsilon=1e-3)
    layer.build((None, 3, 4))
    layer.set_weights([gamma, beta])
    full = np.zeros((5, 3, 7))
    full[..., kept] = x
    mean, variance = full.mean(-1, keepdims=True), full.var(-1, keepdims=True)
    expected = ((full - mean) / np.sqrt(variance + 1e-3))[..., kept] * gamma + beta
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-5)
    again = KeptChannelsLayerNormalization.from_config(layer.get_config())
    assert again.full_width == 7 and again.epsilon == pytest.approx(1e-3)


def test_a_layer_norm_between_dense_layers_slims_exactly_and_the_file_loads(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(8, name="wide")(inputs)
    normed = keras.layers.LayerNormalization(epsilon=1e-2, name="norm")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(normed))
    model.get_layer("norm").set_weights([np.linspace(0.5, 2.0, 8), np.linspace(-1, 1, 8)])
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    small = tfprune.slim(model, plan)
    tfprune.apply_plan(model, plan)
    norm = small.get_layer("norm")
    assert type(norm) is KeptChannelsLayerNormalization and norm.full_width == 8
    assert norm.gamma.shape == (4,)
    np.testing.assert_allclose(small(x), model(x), rtol=1e-5, atol=1e-6)
    small.save(tmp_path / "small.keras")  # loads with `import tfprune` alone
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    np.testing.assert_allclose(loaded(x), small(x), rtol=1e-6, atol=1e-6)


def _with_head(backbone, inputs, pick):
    """``backbone`` under a Dense head on ``pick(its outputs)``, its norms made to matter."""
    rng = np.random.default_rng(1)
    for variable in backbone.weights:
        if "norm" in variable.path:
            variable.assign(rng.normal(0.5, 0.4, variable.shape))
    symbolic = {name: keras.Input((None,) if np.ndim(value) == 2 else value.shape[1:],
                                  dtype="int32" if np.ndim(value) == 2 else "float32",
                                  name=name) for name, value in inputs.items()}
    return keras.Model(symbolic, keras.layers.Dense(3, name="head")(pick(backbone(symbolic))))


TEXT = {"token_ids": np.random.default_rng(0).integers(1, 50, (2, 9)),
        "padding_mask": np.array([[1] * 9, [1] * 5 + [0] * 4])}


@pytest.mark.parametrize("family", ["bert", "gpt2", "vit"])
def test_layer_norm_transformers_slim_their_hidden_width_as_masked(family):
    """BERT (post-norm, the pooled [CLS] token), GPT-2 (pre-norm, the last token by
    indexing), ViT (pre-norm, patches): the stream is one group, slimmed as masked."""
    keras.utils.set_random_seed(4)
    if family == "bert":
        backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                                 hidden_dim=16, intermediate_dim=32)
        inputs = {**TEXT, "segment_ids": np.zeros((2, 9), "int32")}
        model = _with_head(backbone, inputs, lambda outputs: outputs["pooled_output"])
    elif family == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                                 hidden_dim=16, intermediate_dim=32,
                                                 max_sequence_length=16)
        inputs = dict(TEXT)
        model = _with_head(backbone, inputs, lambda outputs: outputs[:, -1, :])
    else:
        backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8,
                                                num_layers=2, num_heads=2, hidden_dim=16,
                                                mlp_dim=32)
        image = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
        inputs = {"images": image}
        model = _with_head(backbone, inputs, lambda outputs: outputs[:, 0, :])
    (hidden,) = [g for g in tfprune.channel_groups(model) if axis_of(g) == "hidden"]
    assert hidden.size == 16
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.3, axes=("hidden",),
                             scope="layer")
    assert plan.kept_per_layer()[hidden.sources[0]][0] < 16
    saved = model.get_weights()
    tfprune.apply_plan(model, plan)
    expected = np.asarray(model(inputs))
    model.set_weights(saved)
    small = tfprune.slim(model, plan)
    assert any(isinstance(layer, KeptChannelsLayerNormalization) for layer in small.layers)
    np.testing.assert_allclose(small(inputs), expected, atol=1e-5 * np.abs(expected).max())
    assert tfprune.pruning.stats.flops(small) < tfprune.pruning.stats.flops(model)


def test_indexing_passes_channels_only_when_it_leaves_them_whole():
    tokens = keras.Input((6, 8))
    x = keras.layers.Dense(8, name="wide")(tokens)
    picked = {"first_token": x[:, 0, :], "last_token": x[:, -1], "reversed": x[:, ::-1],
              "some_channels": x[..., :4], "channels_reversed": x[..., ::-1]}
    for name, tensor in picked.items():
        pooled = tensor if len(tensor.shape) == 2 else keras.ops.mean(tensor, axis=1)
        model = keras.Model(tokens, keras.layers.Dense(2)(pooled))
        groups = tfprune.channel_groups(model)
        whole = name.startswith(("some", "channels"))
        assert any("wide" in g.sources for g in groups) is not whole, name


def test_a_mistral_causal_lm_slims_heads_and_hidden_width_as_masked():
    """Mistral's attention keeps its head size (a config entry); the class rebuilt with a
    smaller hidden_dim would not match, so the flat model is built, and says why."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.MistralBackbone(vocabulary_size=50, num_layers=2,
                                                num_query_heads=4, num_key_value_heads=2,
                                                hidden_dim=16, intermediate_dim=32)
    lm = keras_hub.models.MistralCausalLM(backbone=backbone, preprocessor=None)
    rng = np.random.default_rng(1)
    for variable in lm.weights:
        if "norm" in variable.path:
            variable.assign(rng.normal(0.5, 0.4, variable.shape))
    axes = {axis_of(group) for group in tfprune.channel_groups(lm)}
    assert axes == {"heads", "mlp", "hidden"}
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.3, scope="layer",
                             axes=("heads", "hidden"))
    expected, _ = _masked(lm, plan, generate=False)
    with pytest.warns(UserWarning, match="computes other outputs than the masked model"):
        small = tfprune.slim(lm, plan)
    assert small.count_params() < lm.count_params()
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-5 * np.abs(expected).max())


def test_a_file_naming_hub_objects_without_keras_hub_says_what_to_install(tmp_path, monkeypatch):
    import sys
    import zipfile

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"module": "tfprune.hub_objects"}')
    monkeypatch.setitem(sys.modules, "tfprune.hub_objects", None)  # as if keras-hub were absent
    with pytest.raises(ModelFileError, match="pip install .tfprune\\[hub\\]."):
        load_model_file(path)
