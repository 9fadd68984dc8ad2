"""Depth pruning: a keras-hub backbone (or causal LM) without some of its blocks.

``drop_blocks(model, [3, 7])`` builds the model's own class with
``num_layers`` two smaller and copies every weight but those of blocks 3 and
7: the embeddings and final normalization as they are, the kept blocks in
order. Rank the blocks first with ``tfprune.importance.blocks.block_importance``.
"""

from __future__ import annotations

import keras

from tfprune.importance.blocks import transformer_blocks
from tfprune.slimming.same_class import around, weights_are_the_backbones


def drop_blocks(model: keras.Model, blocks) -> keras.Model:
    """``model`` rebuilt of its own class without the given blocks.

    Args:
        model: A keras-hub transformer backbone, or a task whose weights are all
            its backbone's (a causal LM with its tied output embedding).
        blocks: Indices of the blocks to remove.

    Returns:
        A new model of the same class (a task keeps its preprocessor).

    Raises:
        ValueError: For an index out of range, removing every block, or a model
            whose config has no ``num_layers``.
    """
    backbone = getattr(model, "backbone", model)
    if backbone is not model:
        if not weights_are_the_backbones(model):
            raise ValueError(f"{type(model).__name__} has weights outside its backbone; drop "
                             "the blocks of its backbone and rebuild the task around it.")
        return around(model, drop_blocks(backbone, blocks))
    existing = transformer_blocks(backbone)
    removed = sorted({int(b) for b in blocks})
    if any(not 0 <= b < len(existing) for b in removed):
        raise ValueError(f"blocks {removed}: {backbone.name!r} has blocks 0 to "
                         f"{len(existing) - 1}.")
    if len(removed) == len(existing):
        raise ValueError(f"blocks {removed}: removing every block of {backbone.name!r} leaves "
                         "no model.")
    config = backbone.get_config()
    if config.get("num_layers") != len(existing):
        raise ValueError(f"{type(backbone).__name__}'s config has no num_layers matching its "
                         f"{len(existing)} blocks.")
    rebuilt = type(backbone).from_config({**config, "num_layers": len(existing) - len(removed)})
    kept = [block for index, block in enumerate(existing) if index not in removed]
    for target, source in zip(transformer_blocks(rebuilt), kept, strict=True):
        target.set_weights(source.get_weights())
    others = [layer for layer in backbone.layers if layer.weights and layer not in existing]
    fresh = [layer for layer in rebuilt.layers
             if layer.weights and layer not in transformer_blocks(rebuilt)]
    for target, source in zip(fresh, others, strict=True):
        target.set_weights(source.get_weights())
    return rebuilt
