"""Recovering a pruned causal LM: logit distillation from the dense LM, padding masked.

``distill_causal_lm(student, teacher, data)`` trains the pruned (student)
causal LM on the dense (teacher) LM's softened next-token distributions with
Keras' own ``keras.distillation.Distiller`` and ``LogitsDistillation``, beside
the next-token cross-entropy on the labels (``student_loss_weight``; 1.0
trains on the labels alone, the baseline distillation must beat).

Keras 3.15's ``Distiller`` leaves sample weights unused, so a causal LM's
padding tokens (sample weight 0 from its preprocessor) would be trained on
and distilled. ``TokenDistiller`` keeps only the tokens whose weight is not
0 (the student's and teacher's logits and the labels, masked alike), then
computes Keras' own losses on them: the token means over real tokens.
``perplexity`` is the exponential of the same mean cross-entropy.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfprune.importance.task_data import LOST_TOKENIZER, lost_tokenizer


class TokenDistiller(keras.distillation.Distiller):
    """A ``keras.distillation.Distiller`` over tokens, padding masked out (module docstring).

    The student loss is the next-token cross-entropy on logits; the
    distillation losses are those given (``LogitsDistillation``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The Distiller's combined loss, over the tokens whose sample weight is not 0."""
        if y_pred is None:
            y_pred = self(x, training=training)
        keep = (tf.ones(tf.shape(y_pred)[:-1], tf.bool) if sample_weight is None
                else tf.not_equal(tf.cast(sample_weight, tf.float32), 0.0))  # bool masks too
        student = tf.boolean_mask(y_pred, keep)
        student_loss = 0.0
        if self.student_loss_weight > 0.0 and y is not None:
            student_loss = self.token_loss(tf.boolean_mask(y, keep), student)
        distillation_loss = 0.0
        if self.student_loss_weight < 1.0:
            teacher = tf.boolean_mask(self.teacher(x, training=False), keep)
            for loss, weight in zip(self.distillation_losses, self.distillation_loss_weights,
                                    strict=True):
                distillation_loss += weight * loss.compute_loss(teacher, student)
        total = (self.student_loss_weight * student_loss
                 + (1.0 - self.student_loss_weight) * distillation_loss)
        self.student_loss_tracker.update_state(student_loss)
        self.distillation_loss_tracker.update_state(distillation_loss)
        self.total_loss_tracker.update_state(total)
        return total


def preprocessed(model, data):
    """``data`` as ``(x, y, sample_weight)`` batches: raw inputs through the LM's preprocessor."""
    preprocessor = getattr(model, "preprocessor", None)
    element = data.element_spec
    if preprocessor is not None and not isinstance(element, tuple | dict):
        return data.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)
    return data


def distill_causal_lm(student: keras.Model, teacher: keras.Model, data, *, epochs: int = 1,
                      steps_per_epoch: int | None = None, temperature: float = 2.0,
                      student_loss_weight: float = 0.5, optimizer=None, callbacks=None,
                      verbose="auto") -> keras.callbacks.History:
    """Trains ``student`` on ``teacher``'s next-token distributions and the labels.

    Args:
        student: The pruned causal LM (``tfprune.slim`` of a keras-hub
            ``CausalLM``, or any causal LM with the teacher's vocabulary).
        teacher: The dense causal LM; it is frozen while this runs.
        data: A ``tf.data.Dataset`` of raw string batches (passed through the
            student's preprocessor) or of ``(x, y, sample_weight)`` batches.
        epochs: Epochs (``keras.Model.fit``).
        steps_per_epoch: Batches per epoch (None: the whole dataset).
        temperature: ``LogitsDistillation``'s temperature (its KL divergence is
            scaled by its square, as the literature does).
        student_loss_weight: The labels' share of the loss; 1.0 trains on the
            labels alone (no teacher), 0.0 on the teacher alone.
        optimizer: Default ``keras.optimizers.AdamW(1e-3)``.
        callbacks: Keras callbacks.
        verbose: ``fit``'s verbosity.

    Returns:
        ``fit``'s History (``student_loss``, ``distillation_loss``, ``total_loss``).

    Raises:
        ValueError: If the two models' vocabularies differ, a weight is out of [0, 1], or
            the student's SentencePiece tokenizer was broken by a seed set after it.
    """
    if not 0.0 <= student_loss_weight <= 1.0:
        raise ValueError(f"student_loss_weight must be in [0, 1], got {student_loss_weight}.")
    vocabularies = [m.output_shape[-1] if hasattr(m, "output_shape") else None
                    for m in (student, teacher)]
    if vocabularies[0] != vocabularies[1]:
        raise ValueError(f"the student predicts {vocabularies[0]} tokens and the teacher "
                         f"{vocabularies[1]}: distillation needs one vocabulary.")
    trainable = teacher.trainable
    teacher.trainable = False
    try:
        distiller = TokenDistiller(
            teacher=teacher, student=student,
            # A KLDivergence object: Keras 3.15 resolves the string "kl_divergence" to the
            # function, which LogitsDistillation then applies to logits, not probabilities.
            distillation_losses=[keras.distillation.LogitsDistillation(
                temperature=temperature, loss=keras.losses.KLDivergence())],
            distillation_loss_weights=[1.0], student_loss_weight=student_loss_weight)
        distiller.compile(optimizer=optimizer or keras.optimizers.AdamW(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return distiller.fit(preprocessed(student, data), epochs=epochs,
                             steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                             verbose=verbose)
    except tf.errors.NotFoundError as error:
        if not lost_tokenizer(error):
            raise
        raise ValueError(f"data: {LOST_TOKENIZER}") from None
    finally:
        teacher.trainable = trainable


def perplexity(model: keras.Model, data) -> float:
    """``exp`` of the mean next-token cross-entropy over the tokens that are not padding.

    Args:
        model: A causal LM.
        data: As ``distill_causal_lm`` takes it.
    """
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    total, tokens = 0.0, 0.0
    for x, y, weights in preprocessed(model, data):
        logits = model(x, training=False)
        total += float(loss(y, logits, sample_weight=tf.cast(weights, logits.dtype)))
        tokens += float(np.sum(np.asarray(weights) != 0))
    if tokens == 0:
        raise ValueError("perplexity: the data holds no token that is not padding.")
    return float(np.exp(total / tokens))
