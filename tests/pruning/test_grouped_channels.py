"""Grouped convolutions and GroupNormalization: channels removed evenly per group, or in whole
groups, and the slimmed model computes what the masked one does."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning.rounding import even_parts
from tfprune.pruning.stats import flops


def resnext_block():
    """1x1 conv -> grouped 3x3 (2 groups) -> BN -> GroupNorm (4 groups) -> depthwise-as-groups."""
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(12, 1, activation="relu", name="reduce")(inputs)
    x = keras.layers.Conv2D(16, 3, groups=2, name="grouped")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GroupNormalization(groups=4, name="gn")(x)
    x = keras.layers.Conv2D(16, 3, groups=16, padding="same", name="dw")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(10, 1, activation="relu", name="expand")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


def _images(count=8):
    return np.random.default_rng(1).normal(size=(count, 10, 10, 3)).astype("float32")


def _group(model, source):
    return next(g for g in tfprune.channel_groups(model) if source in g.sources)


def test_groups_carry_the_splits():
    model = resnext_block()
    reduce, grouped = _group(model, "reduce"), _group(model, "grouped")
    assert (reduce.parts, reduce.atom) == (2, 1)  # the grouped conv's input parts
    assert (grouped.parts, grouped.atom) == (2, 4)  # its output parts, GroupNorm's groups
    assert {"bn", "gn", "dw"} <= set(grouped.followers)  # groups == channels: a depthwise conv
    assert grouped.to_dict()["parts"] == 2 and "parts" not in _group(model, "expand").to_dict()


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_plan_removes_evenly_and_in_whole_groups(seed):
    keras.utils.set_random_seed(seed)
    model = resnext_block()
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.4)
    reduce = plan.keep[str(_group(model, "reduce").index)]
    grouped = plan.keep[str(_group(model, "grouped").index)]
    assert reduce[:6].sum() == reduce[6:].sum() < 6  # both input parts keep the same count
    atoms = grouped.reshape(4, 4)  # GroupNorm's 4 groups of 4 channels: all or none
    assert set(atoms.sum(axis=1)) <= {0, 4}
    assert atoms[:2].sum() == atoms[2:].sum()  # the conv's 2 parts keep as many groups each
    assert abs(plan.removed - round(0.4 * plan.total)) <= 1  # as near as the splits allow


def test_slimmed_model_matches_the_masked_model():
    keras.utils.set_random_seed(0)
    model = resnext_block()
    images = _images()
    model(images, training=True)  # non-trivial BatchNorm statistics
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.random.default_rng(2).normal(size=16) * 0.1)
    scores = tfprune.score(model, "magnitude")
    plan = tfprune.make_plan(model, scores, 0.5)
    assert plan.keep[str(_group(model, "grouped").index)].sum() == 8  # one GroupNorm group
    slimmed = tfprune.slim(model, plan)
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    tfprune.apply_plan(masked, plan)
    np.testing.assert_allclose(slimmed(images), masked(images), rtol=1e-5, atol=1e-5)
    assert slimmed.count_params() < model.count_params()
    layer = slimmed.get_layer("grouped")
    assert layer.groups == 2 and layer.filters == 8 and layer.kernel.shape[-2] == (
        plan.keep[str(_group(model, "reduce").index)].sum() // 2)
    assert slimmed.get_layer("gn").groups == 2
    assert slimmed.get_layer("dw").groups == slimmed.get_layer("dw").filters == 8


def test_grouped_kernel_is_sliced_per_part():
    """The slimmed kernel, checked entry by entry against the original one."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5, 5, 4))
    x = keras.layers.Conv2D(4, 1, name="first")(inputs)
    x = keras.layers.Conv2D(6, 1, groups=2, use_bias=False, name="grouped")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    keep = {_group(model, "first").index: np.array([True, False, False, True]),
            _group(model, "grouped").index: np.array([True, False, True, True, True, False])}
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.0)
    plan.keep.update({str(k): v for k, v in keep.items()})
    slimmed = tfprune.slim(model, plan)
    kernel = model.get_layer("grouped").kernel.numpy()[0, 0]  # (2 rows per part, 6 filters)
    # Filter f of part p = f // 3 reads input channels 2p, 2p+1 through rows 0, 1. Kept inputs
    # 0 (part 0, row 0) and 3 (part 1, row 1); kept filters 0, 2 (part 0) and 3, 4 (part 1).
    expected = np.array([[kernel[0, 0], kernel[0, 2], kernel[1, 3], kernel[1, 4]]])
    np.testing.assert_array_equal(slimmed.get_layer("grouped").kernel.numpy()[0, 0], expected)


def test_even_parts_hand_example():
    scores = np.array([5, 1, 4, 2, 9, 8, 0, 7], float)  # 2 parts of 4, atoms of 2
    keep = [np.array([1, 1, 1, 1, 1, 0, 0, 0], bool)]  # 5 kept: nearest allowed is 4
    (mask,) = even_parts([scores], keep, [1], [(2, 2)])
    # part 0: atoms (5+1, 4+2) -> keep atom 0; part 1: atoms (9+8, 0+7) -> keep atom 0.
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 1, 1, 0, 0])
    (down,) = even_parts([scores], [np.array([1] * 7 + [0], bool)], [1], [(2, 2)], down=True)
    assert down.sum() == 4  # 7 kept rounds down to 4, not up to 8


def test_budget_still_holds_with_grouped_channels():
    model = resnext_block()
    budget = flops(model) * 0.6
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), {"flops": budget})
    assert flops(tfprune.slim(model, plan)) <= budget


def test_group_norm_with_one_group_keeps_its_channels():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.GroupNormalization(groups=1, name="gn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.layers.Conv2D(4, 1, name="c2")(x))))
    assert [g.sources for g in tfprune.channel_groups(model)] == [["c2"]]


def test_grouped_conv_of_a_concatenation_keeps_its_inputs_and_prunes_its_outputs():
    inputs = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(4, 1, name="b")(inputs)
    x = keras.layers.Concatenate()([a, b])
    x = keras.layers.Conv2D(8, 3, groups=2, name="grouped")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.layers.Conv2D(4, 1, name="after")(x))))
    groups = {tuple(g.sources): g for g in tfprune.channel_groups(model)}
    assert ("a",) not in groups and ("b",) not in groups
    assert groups[("grouped",)].parts == 2


def test_group_norm_of_a_concatenation_keeps_its_channels():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Concatenate()([keras.layers.Conv2D(4, 1, name="a")(inputs),
                                    keras.layers.Conv2D(4, 1, name="b")(inputs)])
    x = keras.layers.GroupNormalization(groups=2, name="gn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(
        keras.layers.Conv2D(4, 1, name="after")(x))))
    assert [g.sources for g in tfprune.channel_groups(model)] == [["after"]]


def test_sensitivity_removes_as_a_plan_would():
    from tfprune.pruning.sensitivity import layer_sensitivity

    model = resnext_block()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    table = layer_sensitivity(model, tfprune.score(model, "magnitude"),
                              (_images(), np.arange(8) % 3), ratios=(0.3, 0.6))
    removed = {(row["layer"], row["ratio"]): row["removed"] for row in table.rows}
    assert removed[("grouped", 0.3)] in (0, 8) and removed[("grouped", 0.6)] == 8
    assert removed[("reduce", 0.3)] % 2 == 0 and removed[("expand", 0.3)] == 3
