"""Distilling a pruned causal LM: Keras' Distiller losses over real tokens only."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tfprune.training.lm_distillation import TokenDistiller, distill_causal_lm, perplexity

VOCABULARY = 40


def lm(seed, intermediate_dim=32):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.GemmaCausalLM(backbone=keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=16, intermediate_dim=intermediate_dim, head_dim=4), preprocessor=None)


def batch(count=6, length=8, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCABULARY, (count, length + 1))
    weights = (np.arange(length)[None, :] < rng.integers(3, length + 1, (count, 1))).astype(int)
    x = {"token_ids": tokens[:, :-1] * weights, "padding_mask": weights}
    return x, tokens[:, 1:] * weights, weights


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def test_the_loss_is_keras_losses_over_the_real_tokens_only():
    teacher, student = lm(0), lm(1, intermediate_dim=16)
    distiller = TokenDistiller(
        teacher=teacher, student=student,
        distillation_losses=[keras.distillation.LogitsDistillation(
            temperature=2.0, loss=keras.losses.KLDivergence())],
        distillation_loss_weights=[1.0], student_loss_weight=0.3)
    x, y, w = batch()
    s, t = np.asarray(student(x), np.float64), np.asarray(teacher(x), np.float64)
    real = w != 0
    ce = -np.log(softmax(s)[real, y[real]]).mean()
    p, q = softmax(t[real] / 2), softmax(s[real] / 2)
    kl = (p * np.log(np.clip(p, 1e-7, 1) / np.clip(q, 1e-7, 1))).sum(-1).mean() * 4
    got = float(distiller.compute_loss(x, y, student(x), w))
    assert got == pytest.approx(0.3 * ce + 0.7 * kl, rel=1e-4)
    # keras-hub's preprocessors give the padding mask as booleans.
    assert float(distiller.compute_loss(x, y, student(x), w.astype(bool))) == \
        pytest.approx(got, rel=1e-6)
    # Padding does not count: other logits there change nothing, unlike Keras' own Distiller.
    noisy = np.asarray(student(x)) + 50 * (~real)[..., None] * np.random.default_rng(1).normal(
        size=s.shape)
    assert float(distiller.compute_loss(x, y, tf.constant(noisy, tf.float32), w)) == \
        pytest.approx(got, rel=1e-5)
    plain = keras.distillation.Distiller(
        teacher=teacher, student=student,
        distillation_losses=[keras.distillation.LogitsDistillation(
            temperature=2.0, loss=keras.losses.KLDivergence())],
        distillation_loss_weights=[1.0], student_loss_weight=0.3)
    plain.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    assert float(plain.compute_loss(x, y, tf.constant(noisy, tf.float32), w)) != \
        pytest.approx(got, rel=1e-2)


def test_the_teacher_is_restored_and_two_vocabularies_are_refused():
    """(That distillation lowers a pruned LM's perplexity runs in the language-model guide's
    example, tests/test_docs_examples.py.)"""
    teacher = lm(0)
    x, y, w = batch(count=8, seed=2)
    data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(8)
    other = keras_hub.models.GemmaCausalLM(backbone=keras_hub.models.GemmaBackbone(
        vocabulary_size=VOCABULARY + 1, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=8, head_dim=4),
        preprocessor=None)
    with pytest.raises(ValueError, match="one vocabulary"):
        distill_causal_lm(other, teacher, data)
    assert teacher.trainable
    with pytest.raises(ValueError, match="student_loss_weight must be in"):
        distill_causal_lm(teacher, teacher, data, student_loss_weight=1.5)
    assert perplexity(teacher, data) > 1
