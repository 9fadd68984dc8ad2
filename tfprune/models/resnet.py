"""ResNet for 32x32 inputs (CIFAR) with depth 6n+2 and projection shortcuts."""

from __future__ import annotations

import keras

from tfprune.models.layers import LayerFactory, check_common_args, scaled_width
from tfprune.models.registry import register_model

#: Stage widths of the CIFAR ResNets.
RESNET_STAGE_WIDTHS = (16, 32, 64)


def _basic_block(factory: LayerFactory, x, filters: int, stride: int, prefix: str):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 conv + BN when shapes change)."""
    shortcut = x
    y = factory.conv(filters, 3, stride, name=f"{prefix}_conv1")(x)
    y = factory.batch_norm(name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = factory.conv(filters, 3, 1, name=f"{prefix}_conv2")(y)
    y = factory.batch_norm(name=f"{prefix}_bn2")(y)
    if stride != 1 or int(x.shape[-1]) != filters:
        shortcut = factory.conv(filters, 1, stride, name=f"{prefix}_shortcut_conv")(x)
        shortcut = factory.batch_norm(name=f"{prefix}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


@register_model("resnet")
def resnet(
    depth: int = 56,
    *,
    width_multiplier: float = 1.0,
    num_classes: int = 10,
    input_shape=(32, 32, 3),
    weight_decay: float = 0.0,
    kernel_initializer="torch_default",
    name: str | None = None,
) -> keras.Model:
    """Builds a CIFAR ResNet of depth ``6n + 2`` with basic blocks.

    A 3x3 stem of 16 filters, three stages of ``n`` blocks with widths
    16/32/64 (stride 2 at the start of stages 2 and 3, with 1x1 conv + BN
    projection shortcuts), global average pooling and a Dense classifier.
    Layers are named ``stem_{conv,bn,relu}``,
    ``stage{s}_block{b}_{conv1,bn1,relu1,conv2,bn2,shortcut_conv,shortcut_bn,add,out}``,
    ``avg_pool`` and ``classifier``.

    Args:
        depth: Total depth; ``(depth - 2)`` must be divisible by 6 (20, 32, 44, 56, 110).
        width_multiplier: Scales every stage width.
        num_classes: Outputs of the classifier (logits).
        input_shape: (height, width, channels) of one image.
        weight_decay: Coupled L2 weight decay on every weight.
        kernel_initializer: ``"torch_default"`` or a Keras initializer name.
        name: The model's name; ``resnet{depth}`` by default.

    Returns:
        An uncompiled functional ``keras.Model``.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2 with n >= 1 (20, 32, 56, ...), got {depth}.")
    blocks_per_stage = (depth - 2) // 6
    input_shape = check_common_args(num_classes, input_shape)
    factory = LayerFactory(weight_decay, kernel_initializer)
    inputs = keras.Input(shape=input_shape, name="image")
    x = factory.conv_bn_relu(inputs, scaled_width(16, width_multiplier), 3, prefix="stem")
    for stage, width in enumerate(RESNET_STAGE_WIDTHS, start=1):
        filters = scaled_width(width, width_multiplier)
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(factory, x, filters, stride, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = factory.classifier(num_classes, int(x.shape[-1]))(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def _register_resnet(depth: int) -> None:
    @register_model(f"resnet{depth}")
    def builder(**kwargs) -> keras.Model:
        return resnet(depth, **kwargs)

    builder.__doc__ = f"Builds CIFAR ResNet-{depth}; keyword arguments as ``resnet``."


for _depth in (20, 32, 44, 56, 110):
    _register_resnet(_depth)
