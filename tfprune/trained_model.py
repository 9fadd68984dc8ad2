"""Which model ``fit`` trains, for callbacks that prune, checkpoint or save it."""

from __future__ import annotations

import keras


def trained_model(model: keras.Model) -> keras.Model:
    """The model ``fit`` trains: a ``keras.distillation.Distiller``'s student, else the model.

    A Distiller is checkpointed, saved and pruned as its student, whose compiled
    optimizer it trains with.
    """
    return model.student if isinstance(model, keras.distillation.Distiller) else model
