"""A causal LM scored on its own next-token loss, from raw strings through its preprocessor.

A tiny Gemma with a SentencePiece vocabulary trained here on a few sentences
(sentencepiece is a keras-hub dependency): snip's g must equal a plain
``GradientTape`` of the task's ``compute_loss`` with the preprocessor's
padding mask as sample weights, and differ from the unmasked loss's.
"""

import io

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

import tfprune

CORPUS = [
    "pruning removes the channels whose removal changes the loss the least",
    "the gradient flow of the weights decides which filters matter early in training",
    "magnitude based pruning keeps the filters with the largest norms",
    "a hessian gradient product measures how the gradient norm changes",
    "small models run faster on edge devices",
    "the loss preservation measure keeps the loss near its value",
] * 4
#: Short and long strings: the preprocessor pads the short ones.
TEXTS = ["the loss", "pruning removes channels", "a model", "edge devices run small models",
         "the gradient flow of the weights", "norms", "filters matter early", "the hessian"]


@pytest.fixture(scope="module")
def causal_lm():
    keras.utils.set_random_seed(0)  # before the tokenizer: a later seed breaks its tf.data use
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=proto, vocab_size=60, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="<pad>", bos_piece="<bos>",
        eos_piece="<eos>", unk_piece="<unk>", minloglevel=2)
    tokenizer = keras_hub.models.GemmaTokenizer(proto=proto.getvalue())
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer, sequence_length=10)
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32, head_dim=4)
    return keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)


def test_scores_are_those_of_the_next_token_loss_with_padding_masked(causal_lm):
    raw = tf.data.Dataset.from_tensor_slices(TEXTS).batch(len(TEXTS))
    scores = tfprune.score(causal_lm, "snip", raw, num_samples=len(TEXTS),
                           batch_size=len(TEXTS))
    x, y, weights = causal_lm.preprocessor(tf.constant(TEXTS))
    assert 0 < float(np.mean(weights)) < 1  # some places are padding
    kernel = causal_lm.backbone.get_layer("decoder_block_0").gating_ffw.kernel
    with tf.GradientTape(persistent=True) as tape:
        predicted = causal_lm(x)
        masked = causal_lm.compute_loss(x=x, y=y, y_pred=predicted, sample_weight=weights)
        unmasked = causal_lm.compute_loss(x=x, y=y, y_pred=predicted)
    got = next(v for key, v in scores.items() if key.endswith("decoder_block_0/ffw_gating"))
    expected, unweighted = (np.abs(kernel.numpy() * tape.gradient(loss, kernel).numpy())
                            .sum(axis=0) for loss in (masked, unmasked))
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert not np.allclose(got, unweighted, rtol=1e-2)  # the padding mask matters


def test_every_gradient_measure_is_finite_on_raw_strings(causal_lm):
    raw = tf.data.Dataset.from_tensor_slices(CORPUS[:12]).batch(4)
    for measure in ("snip", "proposed", "grasp", "loss_preservation"):
        scores = tfprune.score(causal_lm, measure, raw, num_samples=12, batch_size=4,
                               samples_per_class=1)  # no classes: a random memory of 10
        assert all(np.all(np.isfinite(v)) for v in scores.values()), measure


def test_activation_scores_leave_the_padding_out(causal_lm):
    """A causal LM's real tokens never see the padding after them, so the padded batch's
    activations, padding masked, are those of each string alone, unpadded."""
    raw = tf.data.Dataset.from_tensor_slices(TEXTS).batch(len(TEXTS))
    padded = tfprune.score(causal_lm, "activation", raw)
    x, _, mask = causal_lm.preprocessor(tf.constant(TEXTS))
    lengths = np.asarray(mask).sum(axis=1)
    assert lengths.min() < lengths.max() == 10  # some strings are padded
    alone = [(({"token_ids": np.asarray(x["token_ids"])[i:i + 1, :n],
                "padding_mask": np.ones((1, n), int)}, np.zeros((1, n), int)), n)
             for i, n in enumerate(lengths)]
    expected = {}
    for batch, count in alone:
        context = tfprune.importance.ScoringContext(causal_lm.backbone, batch)
        for name, values in context.activations().items():
            expected[name] = expected.get(name, 0) + values * count
    for name, values in padded.items():
        key = name.removeprefix(f"{causal_lm.backbone.name}/")
        reference = expected.get(name, expected.get(key))
        np.testing.assert_allclose(values, reference / lengths.sum(), rtol=1e-4, err_msg=name)


def test_a_seed_set_after_the_tokenizer_is_one_clear_error(causal_lm):
    """Last in this module: the seed breaks every SentencePiece tokenizer made before it."""
    tokenizer = keras_hub.models.GemmaTokenizer(proto=causal_lm.preprocessor.tokenizer.proto)
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer, sequence_length=10)
    task = keras_hub.models.GemmaCausalLM(backbone=causal_lm.backbone,
                                          preprocessor=preprocessor)
    keras.utils.set_random_seed(1)  # after the tokenizer: its tf.data resource is gone
    raw = tf.data.Dataset.from_tensor_slices(TEXTS).batch(4)
    with pytest.raises(tfprune.importance.SampleError, match="set the seed first"):
        tfprune.score(task, "snip", raw, num_samples=8, batch_size=4)

