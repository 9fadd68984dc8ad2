"""Shared building blocks of the CIFAR builders: initializers, weight decay, conv-BN-ReLU."""

from __future__ import annotations

import math

import keras

#: Keras initializers by short name, beside Keras' own names ("he_normal", ...).
#: "torch_default" is PyTorch's default for conv and linear kernels,
#: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which the
#: paper's reference code uses.
_NAMED_INITIALIZERS = {
    "torch_default": lambda: keras.initializers.VarianceScaling(
        scale=1.0 / 3.0, mode="fan_in", distribution="uniform"
    ),
}


def scaled_width(channels: int, width_multiplier: float) -> int:
    """Returns ``channels * width_multiplier`` rounded, never below one channel."""
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}.")
    return max(1, int(round(channels * width_multiplier)))


def kernel_initializer(name: str | keras.initializers.Initializer):
    """Resolves an initializer name (ours or Keras') to a fresh initializer object."""
    if isinstance(name, str) and name in _NAMED_INITIALIZERS:
        return _NAMED_INITIALIZERS[name]()
    try:
        return keras.initializers.get(name)
    except ValueError:
        valid = sorted(_NAMED_INITIALIZERS) + ["any keras.initializers name"]
        raise ValueError(
            f"Unknown kernel_initializer {name!r}. Valid: {', '.join(valid)}."
        ) from None


def weight_decay_regularizer(weight_decay: float):
    """Returns the L2 regularizer equivalent to SGD's coupled weight decay.

    PyTorch's ``SGD(weight_decay=wd)`` adds ``wd * theta`` to every gradient
    before momentum; a loss term ``wd / 2 * ||theta||^2`` has exactly that
    gradient, and Keras' ``L2(l2)`` adds ``l2 * ||theta||^2``.

    Args:
        weight_decay: The decay ``wd``; 0 disables it.

    Returns:
        ``keras.regularizers.L2(wd / 2)``, or ``None`` for ``wd == 0``.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


class LayerFactory:
    """Creates the layers of one model with a shared initializer and weight decay.

    Args:
        weight_decay: Coupled weight decay applied to every weight (kernels,
            BatchNorm scale and offset, Dense bias).
        initializer: Kernel initializer name or object.
    """

    def __init__(self, weight_decay: float = 0.0, initializer="torch_default"):
        self.regularizer = weight_decay_regularizer(weight_decay)
        self.initializer = initializer

    def conv(self, filters: int, kernel_size: int, strides: int = 1, *, name: str):
        """A bias-free 'same'-padded Conv2D."""
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False,
            kernel_initializer=kernel_initializer(self.initializer),
            kernel_regularizer=self.regularizer, name=name,
        )

    def depthwise_conv(self, kernel_size: int, strides: int = 1, *, name: str):
        """A bias-free 'same'-padded DepthwiseConv2D."""
        return keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding="same", use_bias=False,
            depthwise_initializer=kernel_initializer(self.initializer),
            depthwise_regularizer=self.regularizer, name=name,
        )

    def batch_norm(self, *, name: str):
        """An affine BatchNorm with PyTorch's momentum and epsilon."""
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, gamma_regularizer=self.regularizer,
            beta_regularizer=self.regularizer, name=name,
        )

    def classifier(self, num_classes: int, fan_in: int, *, name: str = "classifier"):
        """The final Dense layer; its bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as PyTorch's."""
        bound = 1.0 / math.sqrt(fan_in)
        return keras.layers.Dense(
            num_classes, kernel_initializer=kernel_initializer(self.initializer),
            bias_initializer=keras.initializers.RandomUniform(-bound, bound),
            kernel_regularizer=self.regularizer, bias_regularizer=self.regularizer, name=name,
        )

    def conv_bn_relu(self, x, filters: int, kernel_size: int, strides: int = 1, *, prefix: str):
        """Applies conv -> BatchNorm -> ReLU, naming the layers ``{prefix}_conv`` etc."""
        x = self.conv(filters, kernel_size, strides, name=f"{prefix}_conv")(x)
        x = self.batch_norm(name=f"{prefix}_bn")(x)
        return keras.layers.ReLU(name=f"{prefix}_relu")(x)


def check_common_args(num_classes: int, input_shape) -> tuple[int, int, int]:
    """Validates ``num_classes`` and ``input_shape`` shared by every builder."""
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}.")
    return shape
