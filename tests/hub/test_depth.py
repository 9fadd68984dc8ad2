"""Depth pruning: blocks ranked by how much they turn their hidden states, and removed.

A block made an exact identity (its attention output and MLP down projections
zeroed: Gemma's blocks add both to their input) must rank least important, and
the model without it must compute exactly what the model with it computes.
"""

import keras
import keras_hub
import numpy as np
import pytest

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
