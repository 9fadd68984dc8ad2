"""Keras 3 model builders for the paper's CIFAR networks, by name.

Example:
    >>> from tfprune import models
    >>> models.available_models()[:3]
    ['mobilenet_v1', 'resnet', 'resnet110']
    >>> model = models.build("vgg13", width_multiplier=0.25, num_classes=10)

"""

from tfprune.models import mobilenet, resnet, vgg  # noqa: F401  (registers the builders)
from tfprune.models.registry import available_models, build, get_builder, register_model

__all__ = ["available_models", "build", "get_builder", "register_model"]
