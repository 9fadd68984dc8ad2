"""Hand-written models of the kinds users ship, shared by the zoo check and the golden test.

``tests/`` is on ``sys.path`` (its conftest), so any test imports them as ``zoo_models``.
"""

import keras


def unet():
    inputs = keras.Input((16, 16, 3))
    down1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="down1")(inputs)
    x = keras.layers.MaxPooling2D()(down1)
    down2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="down2")(x)
    x = keras.layers.MaxPooling2D()(down2)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="bottom")(x)
    x = keras.layers.Conv2DTranspose(16, 2, strides=2, name="up2")(x)
    x = keras.layers.Concatenate()([x, down2])
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="dec2")(x)
    x = keras.layers.UpSampling2D()(x)
    x = keras.layers.Concatenate()([x, down1])
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="dec1")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, name="pixels")(x))


def keyword_spotter():
    inputs = keras.Input((40, 10))
    x = inputs
    for i, width in enumerate((16, 24, 32)):
        x = keras.layers.Conv1D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling1D()(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def transformer():
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(inputs)
    attention = keras.layers.MultiHeadAttention(4, 4, name="attention")(x, x)
    x = keras.layers.LayerNormalization(name="ln1")(x + attention)
    hidden = keras.layers.Dense(32, activation="gelu", name="mlp_in")(x)
    x = keras.layers.LayerNormalization(name="ln2")(x + keras.layers.Dense(16, name="mlp_out")(
        hidden))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def einsum_mlp():
    """A transformer block whose MLP is written with EinsumDense, beside an attention-style
    EinsumDense with a head axis (kept whole)."""
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 16, name="embed")(inputs)
    heads = keras.layers.EinsumDense("abc,cde->abde", output_shape=(12, 2, 8), bias_axes="de",
                                     name="heads")(x)
    x = x + keras.layers.Reshape((12, 16))(heads)
    hidden = keras.layers.EinsumDense("abc,cd->abd", output_shape=(12, 32), bias_axes="d",
                                      activation="gelu", name="mlp_in")(x)
    x = x + keras.layers.EinsumDense("abc,cd->abd", output_shape=(12, 16), name="mlp_out")(
        hidden)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def group_norm_cnn():
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.GroupNormalization(groups=4, name="gn")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c3")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def grouped_conv_cnn():
    inputs = keras.Input((12, 12, 4))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, groups=2, activation="relu", name="grouped")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="c3")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x)))


def vit():
    """A pre-LayerNorm vision transformer: patches, positions, attention and MLP blocks."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Reshape((16, 16))(keras.layers.Conv2D(16, 4, strides=4, name="patchify")(
        inputs))
    x = x + keras.layers.Embedding(16, 16, name="positions")(keras.ops.arange(16)[None])
    for b in range(2):
        y = keras.layers.LayerNormalization(name=f"ln{b}a")(x)
        x = x + keras.layers.MultiHeadAttention(4, 4, name=f"attention{b}")(y, y)
        y = keras.layers.Dense(32, activation="gelu", name=f"mlp{b}")(
            keras.layers.LayerNormalization(name=f"ln{b}b")(x))
        x = x + keras.layers.Dense(16, name=f"mlp{b}_out")(y)
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln")(x))
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def resnext_gn():
    """ResNeXt-style residual blocks: GroupNorm on the stream, grouped 3x3 convs."""
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name="stem")(inputs)
    x = keras.layers.GroupNormalization(8, name="stem_gn")(x)
    for b in range(2):
        y = keras.layers.Conv2D(16, 1, name=f"b{b}_reduce")(x)
        y = keras.layers.ReLU()(keras.layers.GroupNormalization(4, name=f"b{b}_gn")(y))
        y = keras.layers.Conv2D(16, 3, padding="same", groups=4, name=f"b{b}_grouped")(y)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization(name=f"b{b}_bn")(y))
        x = keras.layers.ReLU()(x + keras.layers.Conv2D(32, 1, name=f"b{b}_expand")(y))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


def ops_model():
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.ops.relu(x) * 0.5
    y = keras.layers.Conv2D(8, 1, name="c2")(x)
    x = keras.ops.mean(keras.ops.maximum(x, y) + 1.0, axis=[1, 2])
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def sequential_cnn():
    return keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, use_bias=False),
        keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Conv2D(16, 3),
        keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])


def nested_backbone():
    backbone = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3),
                                              include_top=False, alpha=0.35)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    x = keras.layers.Dense(16, activation="relu", name="head")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))
