"""VGG for 32x32 inputs (CIFAR), as in the paper: conv-BN-ReLU units, five max-pools, one Dense."""

from __future__ import annotations

import keras

from tfprune.models.layers import LayerFactory, check_common_args, scaled_width
from tfprune.models.registry import register_model

#: Channel configurations; "M" is a 2x2 max-pool. VGG-13 is the paper's network.
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


def vgg(
    config=VGG_CONFIGS["vgg13"],
    *,
    width_multiplier: float = 1.0,
    num_classes: int = 10,
    input_shape=(32, 32, 3),
    weight_decay: float = 0.0,
    kernel_initializer="torch_default",
    name: str = "vgg",
) -> keras.Model:
    """Builds a CIFAR VGG from a channel configuration.

    Layers are named ``block{b}_unit{u}_{conv,bn,relu}``, ``block{b}_pool``,
    ``flatten`` and ``classifier``: block ``b`` ends at its ``b``-th max-pool.

    Args:
        config: Channel counts and ``"M"`` for 2x2 max-pooling.
        width_multiplier: Scales every conv's filter count (rounded, at least 1).
        num_classes: Outputs of the classifier (logits, no softmax).
        input_shape: (height, width, channels) of one image.
        weight_decay: Coupled L2 weight decay on every weight (see
            ``tfprune.models.layers.weight_decay_regularizer``).
        kernel_initializer: ``"torch_default"`` (the reference code's) or a Keras name.
        name: The model's name.

    Returns:
        An uncompiled functional ``keras.Model`` mapping images to logits.
    """
    input_shape = check_common_args(num_classes, input_shape)
    factory = LayerFactory(weight_decay, kernel_initializer)
    inputs = keras.Input(shape=input_shape, name="image")
    x, block, unit, channels = inputs, 1, 1, input_shape[-1]
    for item in config:
        if item == "M":
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
            block, unit = block + 1, 1
            continue
        channels = scaled_width(item, width_multiplier)
        x = factory.conv_bn_relu(x, channels, 3, prefix=f"block{block}_unit{unit}")
        unit += 1
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = int(x.shape[-1])
    outputs = factory.classifier(num_classes, fan_in)(x)
    return keras.Model(inputs, outputs, name=name)


def _register_vgg(variant: str) -> None:
    @register_model(variant)
    def builder(**kwargs) -> keras.Model:
        kwargs.setdefault("name", variant)
        return vgg(VGG_CONFIGS[variant], **kwargs)

    builder.__doc__ = f"Builds CIFAR {variant.upper()}; keyword arguments as ``vgg``."


for _variant in VGG_CONFIGS:
    _register_vgg(_variant)
