import math

import keras
import numpy as np
import pytest

from tfprune import models
from tfprune.models.mobilenet import MOBILENET_V1_BLOCKS
from tfprune.models.vgg import VGG_CONFIGS


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k


def bn_params(c):
    return 4 * c  # gamma, beta, moving mean, moving variance


def dense_params(c_in, classes):
    return c_in * classes + classes


def vgg13_count(classes=10):
    total, c_in = 0, 3
    for item in VGG_CONFIGS["vgg13"]:
        if item != "M":
            total += conv_params(c_in, item, 3) + bn_params(item)
            c_in = item
    return total + dense_params(c_in, classes)


def mobilenet_count(classes=10):
    total = conv_params(3, 32, 3) + bn_params(32)
    c_in = 32
    for filters, _ in MOBILENET_V1_BLOCKS:
        total += 9 * c_in + bn_params(c_in)  # depthwise 3x3, one filter per channel
        total += conv_params(c_in, filters, 1) + bn_params(filters)
        c_in = filters
    return total + dense_params(c_in, classes)


def resnet_count(depth, classes=10):
    n = (depth - 2) // 6
    total = conv_params(3, 16, 3) + bn_params(16)
    c_in = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(n):
            total += conv_params(c_in, width, 3) + conv_params(width, width, 3)
            total += 2 * bn_params(width)
            if c_in != width or (stage > 0 and block == 0):
                total += conv_params(c_in, width, 1) + bn_params(width)
            c_in = width
    return total + dense_params(c_in, classes)


@pytest.mark.parametrize(
    ("name", "expected", "pinned"),
    [
        ("vgg13", vgg13_count(), 9_418_954),
        ("mobilenet_v1", mobilenet_count(), 3_239_114),
        ("resnet56", resnet_count(56), 860_026),
        ("resnet20", resnet_count(20), 274_042),
    ],
)
def test_parameter_count_matches_layer_arithmetic(name, expected, pinned):
    model = models.build(name)
    assert expected == pinned
    assert model.count_params() == expected
    assert model.output_shape == (None, 10)
    assert model.input_shape == (None, 32, 32, 3)


def test_vgg13_has_2944_prunable_filters_and_five_pools():
    model = models.build("vgg13")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sum(layer.filters for layer in convs) == 2944
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert len(pools) == 5
    assert model.get_layer("flatten").output.shape[-1] == 512
    assert all(not layer.use_bias for layer in convs)


def test_layer_names_are_stable_and_meaningful():
    vgg = models.build("vgg13")
    for name in ("block1_unit1_conv", "block1_unit1_bn", "block5_unit2_relu", "block5_pool",
                 "classifier"):
        vgg.get_layer(name)
    mobilenet = models.build("mobilenet_v1")
    assert mobilenet.get_layer("block13_pw_conv").filters == 1024
    assert mobilenet.get_layer("block2_dw_conv").strides == (2, 2)
    resnet = models.build("resnet56")
    assert resnet.get_layer("stage2_block1_shortcut_conv").strides == (2, 2)
    assert resnet.get_layer("stage3_block9_conv2").filters == 64
    names = [layer.name for layer in resnet.layers if "shortcut_conv" in layer.name]
    assert names == ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv"]


def test_resnet_stage_resolutions():
    model = models.build("resnet20")
    assert model.get_layer("stage1_block3_out").output.shape[1:] == (32, 32, 16)
    assert model.get_layer("stage2_block1_out").output.shape[1:] == (16, 16, 32)
    assert model.get_layer("stage3_block3_out").output.shape[1:] == (8, 8, 64)


def test_width_multiplier_classes_and_input_shape():
    model = models.build("vgg13", width_multiplier=0.25, num_classes=100, input_shape=(32, 32, 1))
    assert model.get_layer("block1_unit1_conv").filters == 16
    assert model.get_layer("block5_unit2_conv").filters == 128
    assert model.output_shape == (None, 100)
    x = np.zeros((2, 32, 32, 1), "float32")
    assert model(x).shape == (2, 100)
    mobilenet = models.build("mobilenet_v1", width_multiplier=0.5)
    assert mobilenet.get_layer("stem_conv").filters == 16
    assert mobilenet.get_layer("block13_pw_conv").filters == 512


def test_resnet_depth_parameter_and_bad_depth():
    assert models.build("resnet", depth=32).name == "resnet32"
    with pytest.raises(ValueError, match="6n\\+2"):
        models.build("resnet", depth=52)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown model 'vgg99'.*mobilenet_v1.*resnet56.*vgg13"):
        models.build("vgg99")


@pytest.mark.parametrize("bad", [{"num_classes": 0}, {"input_shape": (32, 32)},
                                 {"width_multiplier": 0}])
def test_bad_arguments_fail_clearly(bad):
    with pytest.raises(ValueError, match="num_classes|input_shape|width_multiplier"):
        models.build("resnet20", **bad)


def test_weight_decay_is_coupled_l2_on_every_weight():
    wd = 1e-3
    model = models.build("resnet20", width_multiplier=0.25, weight_decay=wd)
    expected = sum(float(np.sum(np.square(w.numpy()))) for w in model.trainable_weights) * wd / 2
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert models.build("resnet20", width_multiplier=0.25).losses == []


def test_torch_default_initializer_bounds():
    model = models.build("vgg13", width_multiplier=0.25)
    kernel = model.get_layer("block2_unit1_conv").kernel.numpy()
    fan_in = 3 * 3 * kernel.shape[2]
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound  # uniform, so the extremes are reached
    assert models.build("vgg13", width_multiplier=0.25, kernel_initializer="he_normal")
    with pytest.raises(ValueError, match="kernel_initializer"):
        models.build("vgg13", kernel_initializer="nonsense")


def test_models_save_and_load(tmp_path):
    model = models.build("mobilenet_v1", width_multiplier=0.125, weight_decay=1e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
