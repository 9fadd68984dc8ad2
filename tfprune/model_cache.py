"""Per-model caches kept on the model itself, outside Keras' attribute tracking.

What tfprune derives from a model and reuses (its channel graph, compiled
passes, a BatchNorm-mode decision) lives in one holder on the model, so it is
freed with the model and never seen by Keras' saving or cloning.
"""

from __future__ import annotations

from collections.abc import Callable

_ATTRIBUTE = "_tfprune_cache"


class _Holder:
    """A plain object (not a container Keras' saving walks), holding named entries."""

    def __init__(self):
        self.entries: dict = {}


def model_cache(model) -> dict:
    """The model's cache: a dict of named entries, created on first use."""
    holder = model.__dict__.get(_ATTRIBUTE)
    if holder is None:
        holder = _Holder()
        object.__setattr__(model, _ATTRIBUTE, holder)  # bypasses Keras' tracking
    return holder.entries


def cached(model, name: str, build: Callable[[], object]):
    """The model's entry ``name``, built by ``build()`` on first use."""
    entries = model_cache(model)
    if name not in entries:
        entries[name] = build()
    return entries[name]
