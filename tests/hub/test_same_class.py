"""Uniform plans slim keras-hub decoders into their own class; other plans say why not.

Tiny Gemma (grouped-query attention with 2 key/value heads, and with 1),
Llama and Mistral backbones with random weights: a plan made with
``uniform=True`` slims to an instance of the backbone's class whose config
round-trips and whose outputs equal the masked backbone's; a causal LM
rebuilt around it generates the masked model's tokens (greedy).
"""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tfprune.pruning.uniform import kind_of

TOKENS = {"token_ids": np.random.default_rng(0).integers(1, 50, (3, 7)),
          "padding_mask": np.ones((3, 7), int)}

BACKBONES = {
    "gemma": lambda: keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, head_dim=4),
    "gemma_one_kv_head": lambda: keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=1,
        hidden_dim=16, intermediate_dim=32, head_dim=4),
    "llama": lambda: keras_hub.models.LlamaBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32),
    "mistral": lambda: keras_hub.models.MistralBackbone(
        vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32),
}


def masked_copy(backbone, plan):
    copy = type(backbone).from_config(backbone.get_config())
    copy.set_weights(backbone.get_weights())
    tfprune.apply_plan(copy, plan)
    return copy


@pytest.mark.parametrize("name", ["gemma", "llama", "mistral"])  # gemma_one_kv_head: below
def test_a_uniform_plan_slims_to_the_same_class_equal_to_the_masked_backbone(name):
    keras.utils.set_random_seed(0)
    backbone = BACKBONES[name]()
    plan = tfprune.make_plan(backbone, tfprune.score(backbone, "magnitude"), 0.4, uniform=True)
    kept = {}
    for group in tfprune.channel_groups(backbone):  # the same count in every block
        kept.setdefault(kind_of(group), set()).add(int(plan.keep[str(group.index)].sum()))
    assert all(len(counts) == 1 for counts in kept.values()), kept
    _check_same_class(backbone, plan)
    if name in ("gemma", "mistral"):  # a query group gone from every block: its heads too
        for group in tfprune.channel_groups(backbone):
            if group.sources[0].endswith("query_groups"):
                plan.keep[str(group.index)] = np.array([False, True])
        config = _check_same_class(backbone, plan)
        assert (config["num_query_heads"], config["num_key_value_heads"]) == (2, 1)
        if name == "mistral":  # left to hidden_dim // num_query_heads (None), pinned at 4
            assert backbone.get_config()["head_dim"] is None and config["head_dim"] == 4


@pytest.mark.parametrize("name", ["gemma", "gemma_one_kv_head"])
def test_in_heads_mode_query_heads_go_evenly_and_the_key_value_heads_stay(name):
    keras.utils.set_random_seed(1)
    backbone = BACKBONES[name]()
    dense = backbone.get_config()
    plan = tfprune.make_plan(backbone, tfprune.score(backbone, "magnitude"), 0.3,
                             uniform=True, gqa="heads")
    groups = [g for g in tfprune.channel_groups(backbone, gqa="heads")
              if g.sources[0].endswith("query_heads")]
    assert len(groups) == 2 and all(g.parts == dense["num_key_value_heads"] for g in groups)
    for group in groups:  # half the query heads of every group, in every block
        plan.keep[str(group.index)] = np.arange(4) % 2 == 0
    config = _check_same_class(backbone, plan)
    assert config["num_query_heads"] == 2
    assert config["num_key_value_heads"] == dense["num_key_value_heads"]


def _check_same_class(backbone, plan) -> dict:
    """Slims to the backbone's class, config as the plan keeps, equal to the masked backbone."""
    slimmed = tfprune.slim(backbone, plan)
    assert type(slimmed) is type(backbone)
    config, dense = slimmed.get_config(), backbone.get_config()
    kept = {group.sources[0].split("/")[-1]: int(plan.keep[str(group.index)].sum())
            for group in tfprune.channel_groups(backbone, gqa=plan.settings.get("gqa", "groups"))}
    gated = kept.get("ffw_gating", kept.get("feedforward_gate_dense"))
    # Gemma's intermediate_dim counts the gate and the up projection: twice the units.
    assert config["intermediate_dim"] == gated * (2 if "ffw_gating" in kept else 1) < \
        dense["intermediate_dim"]
    groups = kept.get("query_groups", dense["num_key_value_heads"])
    assert config["num_key_value_heads"] == groups
    assert config["num_query_heads"] == kept.get("query_heads", groups * (
        dense["num_query_heads"] // dense["num_key_value_heads"]))
    assert type(backbone).from_config(config).get_config() == config  # round-trips
    assert slimmed.count_params() < backbone.count_params()
    expected = masked_copy(backbone, plan)(TOKENS)
    assert not np.allclose(expected, backbone(TOKENS))  # the masks do something
    np.testing.assert_allclose(slimmed(TOKENS), expected,
                               atol=1e-4 * float(np.abs(expected).max()))
    return config


def test_a_plan_that_is_not_uniform_slims_flat_and_says_why():
    keras.utils.set_random_seed(0)
    backbone = BACKBONES["gemma"]()
    scores = tfprune.score(backbone, "magnitude")
    plan = tfprune.make_plan(backbone, scores, 0.0)
    mlp = [g for g in tfprune.channel_groups(backbone) if g.size == 16]
    plan.keep[str(mlp[0].index)][:3] = False  # block 0 loses 3 MLP units, block 1 none
    with pytest.warns(UserWarning, match="not a GemmaBackbone: no config of GemmaBackbone "
                                         "gives the kept shapes.*uniform=True"):
        slimmed = tfprune.slim(backbone, plan)
    assert not isinstance(slimmed, keras_hub.models.GemmaBackbone)  # a flat functional model
    np.testing.assert_allclose(slimmed(TOKENS), masked_copy(backbone, plan)(TOKENS), atol=1e-5)


def test_the_slimmed_causal_lm_generates_the_masked_models_tokens():
    keras.utils.set_random_seed(0)
    backbone = BACKBONES["gemma"]()
    task = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    plan = tfprune.make_plan(task, tfprune.score(task, "magnitude"), 0.5, uniform=True)
    slimmed = tfprune.slim(task, plan)
    assert type(slimmed) is keras_hub.models.GemmaCausalLM
    assert type(slimmed.backbone) is keras_hub.models.GemmaBackbone
    copy = type(backbone).from_config(backbone.get_config())
    copy.set_weights(backbone.get_weights())
    masked = keras_hub.models.GemmaCausalLM(backbone=copy, preprocessor=None)
    tfprune.apply_plan(masked, plan)
    prompt = {"token_ids": np.array([[5, 9, 2, 0, 0, 0, 0, 0]]),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]])}
    for model in (masked, slimmed):
        model.compile(sampler="greedy")
    expected = masked.generate(prompt, stop_token_ids=None)
    generated = slimmed.generate(prompt, stop_token_ids=None)
    np.testing.assert_array_equal(generated["token_ids"], expected["token_ids"])
    assert (expected["padding_mask"][0] == 1).all()  # every place was generated


def test_uniform_with_a_measured_budget_is_refused():
    backbone = BACKBONES["gemma"]()
    with pytest.raises(tfprune.pruning.PlanError, match="uniform=True with a measured budget"):
        tfprune.make_plan(backbone, tfprune.score(backbone, "magnitude"),
                          {"tflite_kb": 10}, uniform=True)


def test_axes_choose_what_a_plan_may_shorten():
    from tfprune.graph.channels import ChannelGroup
    from tfprune.pruning.axes import axis_of

    backbone = BACKBONES["gemma"]()
    scores = tfprune.score(backbone, "magnitude")
    groups = tfprune.channel_groups(backbone)
    for axes, pruned in ((("heads",), "heads"), (("mlp",), "mlp")):
        plan = tfprune.make_plan(backbone, scores, 0.3, axes=axes)
        removed = {axis_of(g): 0 for g in groups}
        for group in groups:
            removed[axis_of(group)] += group.size - int(plan.keep[str(group.index)].sum())
        on_axis = sum(g.size for g in groups if axis_of(g) == pruned)
        # 30% of the axis' own channels go, and nothing else.
        assert removed == {**{a: 0 for a in removed}, pruned: round(0.3 * on_axis)}, axes
        assert plan.settings["axes"] == list(axes)
    assert {axis_of(g) for g in groups} == {"heads", "mlp"}
    residual = ChannelGroup(0, 4, sources=["block_0/dense"], followers=["block_1/norm"])
    assert axis_of(residual) == "hidden"
    # with depth, each side keeps sqrt(0.7): no block of two goes (round(0.33)), 16% of MLP
    plan = tfprune.make_plan(backbone, scores, 0.3, axes=("mlp", "depth"))
    assert plan.blocks["keep"] == [True, True]
    assert plan.removed == round((1 - 0.7 ** 0.5) * sum(
        g.size for g in groups if axis_of(g) == "mlp"))
    with pytest.raises(tfprune.pruning.PlanError, match="axes must be"):
        tfprune.make_plan(backbone, scores, 0.3, axes=("width",))


def test_a_uniform_plan_under_a_parameter_budget_fits_it_closely():
    """The budget search takes one query group, in block 0 only (its scores say so); made
    uniform, both blocks keeping 1 would overshoot by a whole group: MLP units go instead."""
    backbone = BACKBONES["gemma"]()
    scores = dict(tfprune.score(backbone, "magnitude"))
    for key in scores:
        if key.endswith("query_groups"):
            scores[key] = np.array([1e-6, 1e3]) if "block_0" in key else np.array([1e3, 2e3])
    dense = backbone.count_params()
    group = 3 * 16 * 2 * 4 + 16 * 2 * 4  # a query group's q (2 heads), k, v and output slices
    budget = dense - group
    plan = tfprune.make_plan(backbone, scores, {"params": budget}, uniform=True)
    slimmed = tfprune.slim(backbone, plan)
    assert type(slimmed) is type(backbone)
    assert slimmed.get_config()["num_key_value_heads"] == 2  # no query group in either block
    mlp_unit = 3 * 16 * 2  # gate, up and down rows of one unit, in each of the 2 blocks
    assert budget - mlp_unit <= slimmed.count_params() <= budget
