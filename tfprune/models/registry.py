"""Name registry for model builders: ``build("vgg13", width_multiplier=0.5)``."""

from __future__ import annotations

from collections.abc import Callable

import keras

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}


def register_model(name: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Registers a builder function under ``name`` (a decorator).

    Args:
        name: The short name used by configs and the CLI, e.g. ``"vgg13"``.

    Returns:
        A decorator that registers and returns the builder unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _BUILDERS:
            raise ValueError(f"A model builder named {name!r} is already registered.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def available_models() -> list[str]:
    """Returns the sorted names of all registered model builders."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable[..., keras.Model]:
    """Returns the builder registered under ``name``.

    Raises:
        ValueError: If no builder has that name; the message lists the valid ones.
    """
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model {name!r}. Valid model names: {', '.join(available_models())}. "
            "Your own: @tfprune.models.register_model(name) on its builder in a module, "
            "imported first (on the command line `tfprune --import MODULE ...`)."
        ) from None


def build(name: str, **kwargs) -> keras.Model:
    """Builds the registered model ``name``.

    Args:
        name: A registered model name (see ``available_models()``).
        **kwargs: Passed to the builder, e.g. ``width_multiplier``, ``num_classes``,
            ``input_shape``, ``weight_decay``, ``kernel_initializer``.

    Returns:
        An uncompiled Keras 3 functional model.

    Example:
        >>> from tfprune import models
        >>> model = models.build("resnet20", width_multiplier=0.5)
        >>> model.output_shape
        (None, 10)
    """
    return get_builder(name)(**kwargs)
