"""Raw data for a keras-hub task model, passed through its own preprocessor.

A keras-hub task (``TextClassifier``, ``ImageClassifier``...) carries a
``preprocessor`` that turns raw inputs (strings, images of any size) into
the backbone's inputs (token ids, padding masks, resized pixels), and its
``fit`` maps every ``tf.data.Dataset`` through it. Scoring does the same, so
the gradients are those of the loss the task is trained with, on the inputs
it sees.
"""

from __future__ import annotations

import tensorflow as tf


def task_preprocessor(model):
    """The keras-hub task's preprocessor, or None (any other model, or a task without one)."""
    preprocessor = getattr(model, "preprocessor", None)
    return preprocessor if callable(preprocessor) else None


def through_preprocessor(model, data, batch_size: int):
    """``data`` mapped through the task's preprocessor, as keras-hub's ``fit`` maps it.

    Args:
        model: The model scored.
        data: Its data: a ``tf.data.Dataset`` of raw ``(x, y)`` batches, or
            raw ``(x, y)`` arrays or lists (batched here by ``batch_size``);
            anything else, or a model without a preprocessor, is returned as is.
        batch_size: The batch size for raw arrays.
    """
    preprocessor = task_preprocessor(model)
    if preprocessor is None:
        return data
    if isinstance(data, tuple | list) and len(data) in (2, 3):
        data = tf.data.Dataset.from_tensor_slices(tuple(data)).batch(batch_size)
    if not isinstance(data, tf.data.Dataset):
        return data
    return data.map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE)


#: Why a SentencePiece tokenizer stops working in ``tf.data``, and the fix.
LOST_TOKENIZER = (
    "the task's preprocessor cannot tokenize in tf.data: its SentencePiece tokenizer's "
    "resource no longer exists. This happens when keras.utils.set_random_seed (or "
    "tf.random.set_seed) is called after the tokenizer was made (keras-hub's own fit fails "
    "the same way): set the seed first, then make the tokenizer and the task.")


def lost_tokenizer(error: Exception) -> bool:
    """Whether ``error`` is TensorFlow's for a SentencePiece resource that no longer exists."""
    return isinstance(error, tf.errors.NotFoundError) and "Sentencepiece" in str(error)

