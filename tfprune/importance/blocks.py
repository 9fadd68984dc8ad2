"""How much each block of a transformer changes its hidden states, measured on data.

Depth pruning removes whole blocks (``tfprune.slimming.depth.drop_blocks``).
``block_importance`` ranks them by Block Influence (ShortGPT, Men et al.,
2024): one minus the cosine similarity between a block's input and output
hidden states, averaged over the tokens that are not padding. A block that
barely turns its input (an importance near 0) is the first to go.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfprune.importance.scores import ScoringError
from tfprune.importance.task_data import task_preprocessor


def transformer_blocks(model: keras.Model) -> list:
    """The repeated blocks of a keras-hub backbone, or of a task's backbone.

    Raises:
        ScoringError: For a model without ``transformer_layers`` (keras-hub's
            name for its list of blocks).
    """
    backbone = getattr(model, "backbone", model)
    blocks = getattr(backbone, "transformer_layers", None)
    if not blocks:
        raise ScoringError(f"model {model.name!r} has no transformer_layers: depth pruning "
                           "takes a keras-hub transformer backbone or a task holding one.")
    return list(blocks)


def block_importance(model: keras.Model, data, num_samples: int = 256) -> np.ndarray:
    """Per block, one minus the mean cosine similarity of its input and output hidden states.

    Args:
        model: A keras-hub transformer backbone, or a task holding one (raw data
            then goes through the task's preprocessor, as in ``fit``).
        data: A ``tf.data.Dataset`` of batches (raw inputs for a task with a
            preprocessor, else the backbone's input dicts; targets, if any, are
            ignored), one batch of backbone inputs, or, for a task with a
            preprocessor, an array of raw inputs.
        num_samples: Sequences averaged over at most.

    Returns:
        One value per block, in block order.
    """
    backbone = getattr(model, "backbone", model)
    blocks = transformer_blocks(model)
    ends = []
    for block in blocks:
        node = block._inbound_nodes[0]
        ends += [node.input_tensors[0], node.output_tensors[0]]
    probe = keras.Model(backbone.inputs, ends)
    preprocessor = task_preprocessor(model)
    if preprocessor is not None and not isinstance(data, (tf.data.Dataset, dict)):
        data = tf.data.Dataset.from_tensor_slices(data).batch(32)  # raw strings or images
    if isinstance(data, tf.data.Dataset):
        if preprocessor is not None:
            data = data.map(preprocessor)
        batches = (element[0] if isinstance(element, tuple) else element for element in data)
    else:
        batches = iter([data])
    similarity, tokens, seen = np.zeros(len(blocks)), 0.0, 0
    for inputs in batches:
        if seen >= num_samples:
            break
        hidden = [np.asarray(h, np.float64) for h in probe(inputs)]
        mask = (np.asarray(inputs["padding_mask"], np.float64)
                if isinstance(inputs, dict) and "padding_mask" in inputs
                else np.ones(hidden[0].shape[:-1]))
        for index in range(len(blocks)):
            before, after = hidden[2 * index], hidden[2 * index + 1]
            cosine = (before * after).sum(-1) / np.maximum(
                np.linalg.norm(before, axis=-1) * np.linalg.norm(after, axis=-1), 1e-12)
            similarity[index] += float((cosine * mask).sum())
        tokens += float(mask.sum())
        seen += len(hidden[0])
    if tokens == 0:
        raise ScoringError("block_importance: the data holds no token that is not padding.")
    return 1.0 - similarity / tokens
