"""keras-hub's ViT, BERT, Gemma (grouped-query attention) and Llama, pruned as they come.

Tiny configs with random weights: their channel groups (heads or query
groups, MLP units), every measure finite on every unit kind, a plan, slim
equal to the masked model (language models at another sequence length than
the trace's), and the masks holding through ``fit``.
"""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tfprune.graph.channels import graph_for
from tfprune.graph.model_graph import TRACE_LENGTH
from tfprune.importance import available_measures
from tfprune.importance.scores import ScoringError
from tfprune.model_files import load_model_file
from tfprune.pruning.masks import MaskEnforcer, variable_masks
from tfprune.storage import StorageError

CLASSES, COUNT = 3, 16


def _inputs(name: str, length: int = 5):
    """Random inputs of the test models (a decoder's at ``length`` tokens)."""
    rng = np.random.default_rng(0)
    if name == "vit":
        return rng.random((COUNT, 16, 16, 3)).astype("float32")
    if name == "bert":
        return {"token_ids": rng.integers(0, 50, (COUNT, 8)),
                "segment_ids": np.zeros((COUNT, 8), int), "padding_mask": np.ones((COUNT, 8), int)}
    return {"token_ids": rng.integers(0, 50, (COUNT, length)),
            "padding_mask": np.ones((COUNT, length), int)}


def _vit(length=None):
    backbone = keras_hub.models.ViTBackbone(image_shape=(16, 16, 3), patch_size=8, num_layers=2,
                                            num_heads=2, hidden_dim=16, mlp_dim=32)
    images = keras.Input((16, 16, 3))
    logits = keras.layers.Dense(CLASSES, name="head")(backbone(images)[:, 0])
    return keras.Model(images, logits), _inputs("vit")


def _bert(length=None):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=8)
    inputs = {name: keras.Input((8,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    logits = keras.layers.Dense(CLASSES, name="head")(backbone(inputs)["pooled_output"])
    return keras.Model(inputs, logits), _inputs("bert")


def _decoder(backbone, length):
    inputs = {name: keras.Input((None,), dtype="int32", name=name)
              for name in ("token_ids", "padding_mask")}
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    logits = keras.layers.Dense(CLASSES, name="head")(pooled)
    return keras.Model(inputs, logits), _inputs("decoder", length)


def _gemma(length=5):
    return _decoder(keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, head_dim=4), length)


def _llama(length=5):
    return _decoder(keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32), length)


def _gpt2(length=5):
    """keras-hub's TransformerDecoder passes its attention cache=None (left out in traces)."""
    return _decoder(keras_hub.models.GPT2Backbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=32), length)


def _mistral(length=5):
    """Its own MistralLayerNormalization (an RMS norm, found by calling it) and attention
    (query groups; its head size a config entry)."""
    return _decoder(keras_hub.models.MistralBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32), length)


BUILDERS = {"vit": _vit, "bert": _bert, "gemma": _gemma, "llama": _llama, "gpt2": _gpt2,
            "mistral": _mistral}
#: Per model: the prunable unit kinds (a group's first source ends with one of these).
UNITS = {"vit": ("mha/heads", "mlp/dense_1"),
         "bert": ("self_attention_layer/heads", "feedforward_intermediate_dense"),
         "gemma": ("attention/query_groups", "ffw_gating"),
         "llama": ("self_attention/query_groups", "feedforward_gate_dense"),
         "gpt2": ("self_attention/heads", "feedforward_intermediate_dense"),
         "mistral": ("self_attention/query_groups", "feedforward_gate_dense")}


def _compiled(name):
    keras.utils.set_random_seed(0)
    model, x = BUILDERS[name]()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, x, np.arange(COUNT) % CLASSES


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def hub_model(request):
    return (request.param, *_compiled(request.param))


def test_every_block_is_analysed_with_its_units_named_by_path(hub_model):
    name, model, _, _ = hub_model
    groups = tfprune.channel_groups(model)
    for unit in UNITS[name]:
        found = [g for g in groups if g.sources[0].endswith(unit)]
        assert len(found) == 2, (unit, [g.sources for g in groups])  # one per block
        assert len({g.sources[0] for g in found}) == 2  # the paths tell the blocks apart
        assert all("/" in g.sources[0] for g in found)


def test_scores_finite_slim_equal_to_masked_and_masks_holding_through_fit(hub_model):
    name, model, x, y = hub_model
    for measure in ("magnitude", "snip"):
        scores = tfprune.score(model, measure, (x, y), num_samples=COUNT, batch_size=8)
        assert all(np.all(np.isfinite(v)) and np.any(v > 0) for v in scores.values()), measure
    plan = tfprune.make_plan(model, scores, 0.4)
    _check_slim_equals_masked(name, model, plan)
    if name in ("gpt2", "mistral"):  # fit is tested on the four models the issue names
        return
    enforcer = MaskEnforcer(model)
    enforcer.install()
    enforcer.update(plan, model.optimizer)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for variable, mask in variable_masks(model, plan):
        assert np.all(np.asarray(variable)[mask == 0] == 0), variable.path
    enforcer.remove()


def _check_slim_equals_masked(name, model, plan):
    """Slimmed equals masked (at another length than the trace's for decoders)."""
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.count_params() < model.count_params()
    x = _inputs(name, TRACE_LENGTH + 3)  # decoders: another length than the trace's
    expected, actual = masked.predict(x, verbose=0), slimmed.predict(x, verbose=0)
    assert not np.allclose(expected, model.predict(x, verbose=0))  # the masks do something
    np.testing.assert_allclose(actual, expected, atol=1e-4 * np.abs(expected).max())


def test_every_measure_is_finite_on_query_groups_and_mlp_units():
    """BatchNorm-based measures refuse a model without BatchNorm, naming the layer."""
    model, x, y = _compiled("gemma")
    for measure in available_measures():
        if measure in ("bn_scale", "taylor_fo"):
            with pytest.raises(ScoringError, match="not followed directly by a BatchNorm"):
                tfprune.score(model, measure, (x, y), num_samples=COUNT, batch_size=8)
            continue
        scores = tfprune.score(model, measure, (x, y), num_samples=COUNT, batch_size=8,
                               samples_per_class=2, initial_weights=model)
        for unit in UNITS["gemma"]:
            values = [v for key, v in scores.items() if key.endswith(unit)]
            assert values and all(np.all(np.isfinite(v)) for v in values), (measure, unit)


def test_a_pruned_query_group_takes_its_query_heads_with_it():
    model, x, y = _compiled("gemma")
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.0)
    group = next(g for g in tfprune.channel_groups(model)
                 if g.sources[0].endswith("decoder_block_0/attention/query_groups"))
    plan.keep[str(group.index)] = np.array([False, True])
    _check_slim_equals_masked("gemma", model, plan)
    slimmed = tfprune.slim(model, plan)
    attention = next(layer for layer in slimmed._flatten_layers()
                     if type(layer).__name__ == "CachedGemmaAttention")
    assert (attention.num_query_heads, attention.num_key_value_heads) == (2, 1)
    assert attention.query_dense.kernel.shape[0] == 2  # Gemma's kernels: heads first


class Opaque(keras.layers.Layer):
    """A layer with weights of its own and no handler, as if keras-hub defined it."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


def test_a_keras_hub_layer_nothing_handles_is_kept_whole_with_the_reason():
    """A user's own opaque layer is refused (tests/pruning); keras-hub's cannot be changed by
    its users, so it keeps its channels instead, listed with why."""
    hub_kind = type("Opaque", (Opaque,), {"__module__": "keras_hub.src.layers.fake"})
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, name="before")(inputs)
    x = hub_kind(name="opaque")(x)
    hidden = keras.layers.Dense(5, name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    assert [g.sources for g in tfprune.channel_groups(model)] == [["hidden"]]
    reasons = {tuple(sources): why for sources, _, why in graph_for(model).kept_whole()}
    assert "a keras-hub Opaque tfprune cannot see into" in reasons[("before",)]
    with pytest.raises(tfprune.handlers.GraphError, match="'opaque' \\(Opaque\\)"):
        tfprune.channel_groups(keras.Model(inputs, keras.layers.Dense(2)(
            Opaque(name="opaque")(keras.layers.Dense(8)(inputs)))))


def _with_random_sinks(lm):
    """GPT-OSS's per-head sink logits away from their initial values, so which head has which
    one matters."""
    rng = np.random.default_rng(3)
    for variable in lm.weights:
        if variable.path.endswith("sinks"):
            variable.assign(rng.normal(0, 2, variable.shape))
    return lm


TOKENS = {"token_ids": np.random.default_rng(0).integers(1, 50, (3, 7)),
          "padding_mask": np.ones((3, 7), int)}


def _slimmed_flat_and_masked(lm, plan):
    """``(slim(lm, plan), lm's logits on TOKENS under the plan's masks)``: a flat slim."""
    saved = lm.get_weights()
    tfprune.apply_plan(lm, plan)
    expected = np.asarray(lm(TOKENS))
    lm.set_weights(saved)
    with pytest.warns(UserWarning, match="flat functional model"):
        return tfprune.slim(lm, plan), expected


#: Decoders whose attention got a handler in session 20: Mixtral's and Qwen 2's derive their
#: head size from their input width (slimmed as tfprune.hub_objects twins), Qwen 3's has it in
#: its config, GPT-OSS's has a sink logit per query head. The experts' blocks are kept whole
#: and stay the decoder's own sublayers in the slimmed model (Qwen3-MoE's cannot be rebuilt
#: from a config of its own).
DECODERS = {
    "mixtral": lambda: keras_hub.models.MixtralCausalLM(keras_hub.models.MixtralBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, num_experts=4, top_k=2), preprocessor=None),
    "qwen": lambda: keras_hub.models.QwenCausalLM(keras_hub.models.QwenBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32), preprocessor=None),
    "qwen3": lambda: keras_hub.models.Qwen3CausalLM(keras_hub.models.Qwen3Backbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, head_dim=4), preprocessor=None),
    "gpt_oss": lambda: _with_random_sinks(keras_hub.models.GptOssCausalLM(
        keras_hub.models.GptOssBackbone(vocabulary_size=50, num_layers=2, num_query_heads=4,
                                        num_key_value_heads=2, hidden_dim=16,
                                        intermediate_dim=32, num_experts=4), preprocessor=None)),
    "qwen3_moe": lambda: keras_hub.models.Qwen3MoeCausalLM(keras_hub.models.Qwen3MoeBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, moe_intermediate_dim=16, num_experts=4,
        head_dim=4, top_k=2), preprocessor=None),
}


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_decoder_attention_loses_a_query_group_slims_as_masked_and_reloads(name, tmp_path):
    """One block keeps one of its two query groups; Mixtral's experts are kept whole."""
    keras.utils.set_random_seed(0)
    lm = DECODERS[name]()
    graph = graph_for(lm)
    attention = [g for g in graph.groups if g.sources[0].endswith("query_groups")]
    assert [g.sources[0].split("/", 1)[1] for g in attention] == [
        f"transformer_layer_{i}/self_attention/query_groups" for i in (0, 1)]
    if name in ("gpt_oss", "mixtral", "qwen3_moe"):  # the router selects experts: kept whole
        assert any(op in why for _, _, why in graph.kept_whole() for op in ("softmax", "top"))
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.0)
    plan.keep[str(attention[0].index)][:] = [False, True]
    small, expected = _slimmed_flat_and_masked(lm, plan)
    assert small.count_params() < lm.count_params()
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-5 * np.abs(expected).max())
    small.save(tmp_path / "decoder.keras")
    np.testing.assert_array_equal(load_model_file(tmp_path / "decoder.keras")(TOKENS),
                                  small(TOKENS))


def test_smollm3_whose_layers_misreport_their_output_shapes_prunes_its_mlp(tmp_path):
    """SmolLM 3's attention and rotary embedding compute output shapes from a list of shapes
    Keras does not hand them: traced and slimmed, their output specs come from their calls.
    Its decoder's config lacks its arguments: the flat slimmed model refuses to be saved
    (it would not load) and says why."""
    keras.utils.set_random_seed(0)
    lm = keras_hub.models.SmolLM3CausalLM(keras_hub.models.SmolLM3Backbone(
        vocabulary_size=50, hidden_dim=16, intermediate_dim=32, num_layers=2,
        num_attention_heads=4, num_key_value_heads=2, attention_bias=False,
        attention_dropout=0.0, rope_layer_enabled_list=[True, True],
        layer_types=["attention", "attention"], mlp_bias=False, layer_norm_epsilon=1e-5,
        max_position_embeddings=64, rope_theta=10000.0, partial_rotary_factor=1.0),
        preprocessor=None)
    groups = tfprune.channel_groups(lm)
    assert [g.sources[0].split("/", 1)[1] for g in groups] == [
        f"transformer_layer_{i}/mlp/gate_proj" for i in (0, 1)]
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.0)
    plan.keep[str(groups[0].index)][:8] = False  # block 0 keeps 24 of its 32 MLP units
    small, expected = _slimmed_flat_and_masked(lm, plan)
    np.testing.assert_allclose(small(TOKENS), expected, atol=1e-5 * np.abs(expected).max())
    with pytest.raises(StorageError, match="cannot be saved.*SmolLM3DecoderLayer.*"
                                                  "num_attention_heads"):
        small.save(tmp_path / "smollm3.keras")
