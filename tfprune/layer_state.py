"""State a Keras layer keeps outside its config and weights, copied to a rebuilt twin.

An adapted ``StringLookup``, ``IntegerLookup`` or ``TextVectorization`` holds
its vocabulary in assets: ``get_config`` leaves it out (``model.save`` writes
it with ``save_assets``), so a layer rebuilt from its config alone maps every
token to out-of-vocabulary. ``keras.models.clone_model`` loses it the same way.
"""

from __future__ import annotations

import tempfile


def copy_layer_state(original, rebuilt) -> None:
    """Copies ``original``'s own variables and assets into ``rebuilt``, as ``model.save`` would.

    Only for layers with assets (the preprocessing layers above, which tfprune
    keeps whole, so their variables keep their shapes); others are left alone
    (their weights are copied by ``set_weights``).
    """
    if not (hasattr(original, "save_assets") and hasattr(rebuilt, "load_assets")):
        return
    variables = {}
    original.save_own_variables(variables)
    rebuilt.load_own_variables(variables)  # before the assets (TF-IDF weights), as Keras loads
    with tempfile.TemporaryDirectory() as folder:
        original.save_assets(folder)
        rebuilt.load_assets(folder)
