"""MobileNet-V1 for 32x32 inputs (CIFAR), as in the paper's reference code."""

from __future__ import annotations

import keras

from tfprune.models.layers import LayerFactory, check_common_args, scaled_width
from tfprune.models.registry import register_model

#: (pointwise filters, depthwise stride) of the 13 depthwise-separable blocks.
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


@register_model("mobilenet_v1")
def mobilenet_v1(
    *,
    width_multiplier: float = 1.0,
    num_classes: int = 10,
    input_shape=(32, 32, 3),
    weight_decay: float = 0.0,
    kernel_initializer="torch_default",
    name: str = "mobilenet_v1",
) -> keras.Model:
    """Builds CIFAR MobileNet-V1.

    A stride-1 3x3 stem of 32 filters, then 13 blocks of depthwise 3x3 conv ->
    BN -> ReLU -> pointwise 1x1 conv -> BN -> ReLU, global average pooling and
    a Dense classifier. Layers are named ``stem_{conv,bn,relu}``,
    ``block{i}_dw_{conv,bn,relu}``, ``block{i}_pw_{conv,bn,relu}``, ``avg_pool``
    and ``classifier``.

    Args:
        width_multiplier: Scales the stem and every pointwise filter count.
        num_classes: Outputs of the classifier (logits).
        input_shape: (height, width, channels) of one image.
        weight_decay: Coupled L2 weight decay on every weight.
        kernel_initializer: ``"torch_default"`` or a Keras initializer name.
        name: The model's name.

    Returns:
        An uncompiled functional ``keras.Model``.
    """
    input_shape = check_common_args(num_classes, input_shape)
    factory = LayerFactory(weight_decay, kernel_initializer)
    inputs = keras.Input(shape=input_shape, name="image")
    x = factory.conv_bn_relu(inputs, scaled_width(32, width_multiplier), 3, prefix="stem")
    for index, (filters, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        x = factory.depthwise_conv(3, stride, name=f"block{index}_dw_conv")(x)
        x = factory.batch_norm(name=f"block{index}_dw_bn")(x)
        x = keras.layers.ReLU(name=f"block{index}_dw_relu")(x)
        x = factory.conv_bn_relu(
            x, scaled_width(filters, width_multiplier), 1, prefix=f"block{index}_pw"
        )
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = factory.classifier(num_classes, int(x.shape[-1]))(x)
    return keras.Model(inputs, outputs, name=name)
