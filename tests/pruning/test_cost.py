"""The one cost model: a plan's FLOPs and parameters on the dense model, the budget search's
count of the same keep-masks, and the slimmed model's dense count all agree."""

import keras
import numpy as np
import pytest
from zoo_models import grouped_conv_cnn, resnext_gn, transformer, unet, vit

import tfprune
from tfprune.graph.channels import graph_for
from tfprune.pruning.cost import CostModel, KeepCost


def vgg():
    return tfprune.models.build("vgg11", width_multiplier=0.25, num_classes=10)


def resnet():
    return tfprune.models.build("resnet20", width_multiplier=0.25, num_classes=10)


@pytest.mark.parametrize("builder", [vgg, resnet, unet, transformer, vit, grouped_conv_cnn,
                                     resnext_gn], ids=lambda b: b.__name__)
def test_plan_keep_and_slimmed_counts_agree(builder):
    keras.utils.set_random_seed(0)
    model = builder()
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.4)
    cost = CostModel(model)
    masks = cost.plan_masks(plan)
    keep = {int(index): mask for index, mask in plan.keep.items()}
    slimmed = CostModel(tfprune.slim(model, plan))
    graph = graph_for(model)
    assert cost.flops(masks) == KeepCost(model, graph, "flops")(keep) == slimmed.flops()
    assert cost.params(masks) == KeepCost(model, graph, "params")(keep) == slimmed.params()
    assert cost.flops(masks) < cost.flops() and cost.params(masks) < cost.params()


def test_removed_batchnorm_channels_take_their_moving_statistics_with_them():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    scores = {"conv": np.arange(6.0) + 1}
    plan = tfprune.make_plan(model, scores, 0.5)
    removed = 3 * (3 * 3 * 3)  # kernel filters
    removed += 3 * 4  # gamma, beta, moving mean and variance of 3 channels
    removed += 3 * 2  # the Dense kernel's input rows
    assert tfprune.pruning.stats.param_count(model, plan) == model.count_params() - removed


def test_keep_cost_refuses_a_measured_kind():
    model = vgg()
    with pytest.raises(ValueError, match="counted budget"):
        KeepCost(model, graph_for(model), "latency_ms")
