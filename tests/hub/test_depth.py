"""Depth pruning: blocks ranked by how much they turn their hidden states, and removed.

A block made an exact identity (its attention output and MLP down projections
zeroed: Gemma's blocks add both to their input) must rank least important, and
the model without it must compute exactly what the model with it computes.
"""

import keras
import keras_hub
import numpy as np
import pytest

import tfprune
from tfprune.importance.blocks import block_importance
from tfprune.slimming.depth import drop_blocks

TOKENS = {"token_ids": np.random.default_rng(0).integers(1, 50, (4, 9)),
          "padding_mask": np.array([[1] * 9, [1] * 5 + [0] * 4, [1] * 7 + [0] * 2, [1] * 9])}


def gemma(num_layers=3):
    keras.utils.set_random_seed(0)
    return keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=num_layers, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, head_dim=4)


def make_identity(block):
    """Zeroes what a Gemma block adds to its input: it then passes its input on unchanged."""
    for kernel in (block.attention.output_dense.kernel, block.ffw_linear.kernel):
        kernel.assign(np.zeros(kernel.shape))


def test_an_identity_block_ranks_last_and_dropping_it_changes_nothing():
    backbone = gemma()
    make_identity(backbone.transformer_layers[1])
    importance = block_importance(backbone, TOKENS)
    assert importance.shape == (3,) and importance[1] == pytest.approx(0.0, abs=1e-6)
    assert importance[0] > 1e-3 and importance[2] > 1e-3
    smaller = drop_blocks(backbone, [int(np.argmin(importance))])
    assert type(smaller) is keras_hub.models.GemmaBackbone
    assert smaller.get_config()["num_layers"] == 2
    assert smaller.count_params() < backbone.count_params()
    expected = np.asarray(backbone(TOKENS))
    np.testing.assert_allclose(smaller(TOKENS), expected, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(drop_blocks(backbone, [0])(TOKENS), expected, atol=1e-3)


def test_a_causal_lm_loses_blocks_and_keeps_its_class():
    lm = keras_hub.models.GemmaCausalLM(backbone=gemma(), preprocessor=None)
    smaller = drop_blocks(lm, [2])
    assert type(smaller) is keras_hub.models.GemmaCausalLM
    assert smaller.backbone.get_config()["num_layers"] == 2
    tokens = {key: value[:, :5] for key, value in TOKENS.items()}
    assert smaller(tokens).shape == (4, 5, 50)  # next-token logits over the vocabulary


def test_bad_block_lists_are_refused_naming_the_range():
    backbone = gemma(2)
    with pytest.raises(ValueError, match="has blocks 0 to 1"):
        drop_blocks(backbone, [2])
    with pytest.raises(ValueError, match="removing every block"):
        drop_blocks(backbone, [0, 1])


# -- depth as an axis of a plan ---------------------------------------------------------

def _lm(num_layers=4, seed=1, family="gemma"):
    keras.utils.set_random_seed(seed)
    if family == "llama":
        backbone = keras_hub.models.LlamaBackbone(
            vocabulary_size=50, num_layers=num_layers, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=16, intermediate_dim=32)
        return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=50, num_layers=num_layers, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=32, head_dim=4)
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)


def _masked_and_slim(lm, plan, generate=True):
    """The slimmed model, and the outputs (and greedy tokens) of ``lm`` with the plan's masks."""
    small = tfprune.slim(lm, plan)
    saved = lm.get_weights()
    tfprune.apply_plan(lm, plan)
    masked = np.asarray(lm(TOKENS))
    generated = _greedy(lm) if generate else None
    lm.set_weights(saved)
    return (small, masked, generated) if generate else (small, masked)


def _greedy(lm):
    lm.compile(sampler="greedy")
    prompt = {"token_ids": TOKENS["token_ids"][:2], "padding_mask": np.array(
        [[1] * 3 + [0] * 6, [1] * 4 + [0] * 5])}
    return np.asarray(lm.generate(prompt, stop_token_ids=None)["token_ids"])


def test_a_depth_plan_removes_the_lowest_blocks_and_slims_to_the_masked_model():
    lm = _lm(family="llama")
    influence = tfprune.block_importance(lm, TOKENS)
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.5, axes=("depth",),
                             block_scores=influence)
    assert plan.removed_blocks == sorted(np.argsort(influence)[:2].tolist())
    assert plan.history[-1]["blocks_removed"] == 2 and plan.removed == 0
    small, masked = _masked_and_slim(lm, plan, generate=False)
    assert type(small) is type(lm) and small.backbone.get_config()["num_layers"] == 2
    np.testing.assert_allclose(small(TOKENS), masked, atol=1e-5 * np.abs(masked).max())


def test_depth_with_heads_and_mlp_keeps_the_class_and_generates_as_masked(tmp_path):
    lm = _lm()
    scores = tfprune.score(lm, "magnitude")
    plan = tfprune.make_plan(lm, scores, 0.5, axes=("heads", "mlp", "depth"), uniform=True)
    # each side keeps sqrt(1 - 0.5): one of four blocks, 29% of the other blocks' channels
    assert len(plan.removed_blocks) == 1 and plan.removed > 0
    small, masked, generated = _masked_and_slim(lm, plan)
    config = small.backbone.get_config()
    assert type(small) is keras_hub.models.GemmaCausalLM and config["num_layers"] == 3
    assert config["intermediate_dim"] < 32
    assert type(small.backbone).from_config(config).get_config() == config
    np.testing.assert_allclose(small(TOKENS), masked, atol=1e-5 * np.abs(masked).max())
    np.testing.assert_array_equal(_greedy(small), generated)
    plan.save(tmp_path / "plan")
    loaded = tfprune.PruningPlan.load(tmp_path / "plan")
    assert loaded.removed_blocks == plan.removed_blocks and loaded.checksum() == plan.checksum()


def test_the_pruner_ranks_blocks_on_its_data_and_a_params_budget_is_met():
    lm = _lm()
    make_identity(lm.backbone.transformer_layers[1])
    pruner = tfprune.Pruner(lm, "magnitude", (TOKENS, TOKENS["token_ids"]), axes=("depth",),
                            verbose=0)
    assert pruner.step(0.25).removed_blocks == [1]  # the block that turns nothing
    budget = lm.count_params() - 2.5 * lm.backbone.transformer_layers[0].count_params()
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), {"params": budget},
                             axes=("depth",), block_scores=[4.0, 1.0, 3.0, 2.0])
    assert plan.removed_blocks == [1, 2, 3]
    assert tfprune.slim(lm, plan).count_params() <= budget


def test_a_mask_enforcer_keeps_removed_blocks_out_while_training():
    """The removed block's residual writes get zero masks in their constraints, which the
    optimizer applies after every step (masks holding through fit: test_keras_hub_models)."""
    from tfprune.keras_objects import MaskConstraint
    from tfprune.pruning import MaskEnforcer

    lm = _lm(num_layers=2)
    plan = tfprune.make_plan(lm, tfprune.score(lm, "magnitude"), 0.5, axes=("depth",),
                             block_scores=[1.0, 2.0])
    enforcer = MaskEnforcer(lm)
    enforcer.install()
    enforcer.update(plan)
    removed, kept = lm.backbone.transformer_layers
    for kernel in (removed.attention.output_dense.kernel, removed.ffw_linear.kernel):
        assert isinstance(kernel.constraint, MaskConstraint)
        assert not np.any(np.asarray(kernel)) and not np.any(np.asarray(kernel.constraint.mask))
        assert not np.any(np.asarray(kernel.constraint(kernel + 1.0)))  # a step is undone
    assert np.all(np.asarray(kept.ffw_linear.kernel.constraint.mask) == 1)


def test_depth_refuses_what_it_cannot_do_before_any_work():
    lm = _lm(num_layers=2)
    scores = tfprune.score(lm, "magnitude")
    with pytest.raises(tfprune.pruning.PlanError, match="depth takes a fraction target"):
        tfprune.make_plan(lm, scores, {"flops": 1e5}, axes=("depth",))
    with pytest.raises(tfprune.pruning.PlanError, match="block_scores: 3 values"):
        tfprune.make_plan(lm, scores, 0.5, axes=("depth",), block_scores=[1, 2, 3])
    with pytest.raises(tfprune.pruning.PlanError, match="leaves no block"):
        tfprune.make_plan(lm, scores, 0.9, axes=("depth",))
    inputs = keras.Input((4,))
    dense = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))
    with pytest.raises(tfprune.pruning.PlanError, match="no transformer_layers"):
        tfprune.make_plan(dense, tfprune.score(dense, "magnitude"), 0.5, axes=("depth",))
