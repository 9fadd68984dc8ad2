import keras
import numpy as np
import pytest

import tfprune
from tfprune.pruning import MaskEnforcer, PlanError, PruningPlan, channel_groups, variable_masks


def two_conv_model():
    """conv a (4 filters) -> conv b (2 filters) -> dense head; two groups of 4 and 2."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="a")(inputs)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.Conv2D(2, 3, name="b")(keras.layers.ReLU()(x))
    outputs = keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_global_ranking_on_raw_scores_by_hand():
    model = two_conv_model()
    scores = {"a": np.array([5.0, 1.0, 4.0, 0.5]), "b": np.array([2.0, 3.0])}
    plan = tfprune.make_plan(model, scores, target=0.5, min_keep=0.0)
    # Remove the 3 lowest of all six: a3 (0.5), a1 (1.0), b0 (2.0).
    assert plan.keep["0"].tolist() == [True, False, True, False]
    assert plan.keep["1"].tolist() == [False, True]
    assert plan.removed == 3 and plan.kept_per_layer() == {"a": [2, 4], "b": [1, 2]}


def test_floor_keeps_the_best_scored_channels():
    model = two_conv_model()
    scores = {"a": np.array([5.0, 1.0, 4.0, 0.5]), "b": np.array([0.1, 0.2])}
    plan = tfprune.make_plan(model, scores, target=0.5, min_keep=0.05)
    assert plan.keep["1"].tolist() == [False, True]  # b keeps its best despite low scores
    assert plan.keep["0"].tolist() == [True, False, True, False]
    with pytest.raises(PlanError, match="floors"):
        tfprune.make_plan(model, scores, target=0.9, min_keep=0.5)


def test_layer_scope_removes_the_same_fraction_everywhere():
    model = tfprune.models.build("vgg11", width_multiplier=0.25)
    scores = tfprune.score(model, "random", seed=1)
    plan = tfprune.make_plan(model, scores, target=0.5, scope="layer")
    assert all(kept == original // 2 for kept, original in plan.kept_per_layer().values())


@pytest.mark.parametrize("name", ["vgg11", "mobilenet_v1", "resnet20"])
@pytest.mark.parametrize("target", [0.3, 0.6])
def test_exact_counts_over_rounds(name, target):
    model = tfprune.models.build(name, width_multiplier=0.25)
    total = sum(group.size for group in channel_groups(model))
    plan = None
    for round_index, fraction in enumerate((target / 2, target), start=1):
        scores = tfprune.score(model, "random", seed=round_index)
        plan = tfprune.make_plan(model, scores, fraction, previous=plan)
        assert plan.removed == round(fraction * total)
        assert len(plan.history) == round_index
    for group in channel_groups(model):
        assert plan.keep[str(group.index)].sum() >= max(1, np.ceil(0.05 * group.size))


def test_removed_channels_stay_removed_in_later_rounds():
    model = two_conv_model()
    first = tfprune.make_plan(model, {"a": np.array([1.0, 2, 3, 4]), "b": np.array([5.0, 6])},
                              1 / 6, min_keep=0)
    second = tfprune.make_plan(model, {"a": np.array([9.0, 2, 3, 4]), "b": np.array([5.0, 6])},
                               2 / 6, min_keep=0, previous=first)
    assert second.keep["0"].tolist() == [False, False, True, True]


def test_bad_inputs_fail_clearly():
    model = two_conv_model()
    scores = {"a": np.arange(1.0, 5.0), "b": np.array([1.0, 2.0])}
    for target in (1.0, -0.1):
        with pytest.raises(PlanError, match="target must be in"):
            tfprune.make_plan(model, scores, target)
    with pytest.raises(PlanError, match="no scores for layer 'b'"):
        tfprune.make_plan(model, {"a": np.arange(1.0, 5.0)}, 0.5)
    with pytest.raises(ValueError, match="NaN/Inf .* layer 'a'"):
        tfprune.make_plan(model, {"a": np.array([1, np.nan, 1, 1]), "b": scores["b"]}, 0.5)
    with pytest.raises(PlanError, match="scope must be one of"):
        tfprune.make_plan(model, scores, 0.5, scope="local")


def test_all_zero_or_constant_scores_are_refused_naming_the_layer():
    from tfprune.importance import UninformativeScoreError

    model = two_conv_model()
    for values, what in ((np.zeros(2), "exactly 0"), (np.full(2, 0.25), "all equal")):
        with pytest.raises(UninformativeScoreError, match=f"layer 'b' scores that are {what}"):
            tfprune.make_plan(model, {"a": np.arange(1.0, 5.0), "b": values}, 0.5)


def test_an_uncompiled_one_unit_linear_model_is_refused_by_gradient_measures():
    from tfprune.importance import ScoringError

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))  # a regression? a binary logit?
    data = (np.random.default_rng(0).normal(size=(8, 6, 6, 3)).astype("float32"),
            np.zeros(8, int))
    with pytest.raises(ScoringError, match="has one output unit and is not compiled"):
        tfprune.score(model, "grasp_abs", data, samples_per_class=8)
    tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)  # data-free still works


def test_apply_plan_zeroes_sources_followers_and_consumers():
    model = two_conv_model()
    plan = tfprune.make_plan(model, {"a": np.array([5.0, 1, 4, 0.5]), "b": np.array([2.0, 3])},
                             0.5, min_keep=0)
    tfprune.apply_plan(model, plan)
    a, bn, b, head = (model.get_layer(n) for n in ("a", "a_bn", "b", "head"))
    assert np.all(a.kernel.numpy()[..., [1, 3]] == 0) and np.all(a.kernel.numpy()[..., 0] != 0)
    assert np.all(bn.gamma.numpy()[[1, 3]] == 0) and np.all(bn.beta.numpy()[[1, 3]] == 0)
    assert np.all(b.kernel.numpy()[:, :, [1, 3], :] == 0) and np.all(b.kernel.numpy()[..., 0] == 0)
    assert b.bias.numpy()[0] == 0
    assert np.all(head.kernel.numpy()[0] == 0)  # the head's input channel from b's filter 0


def test_plan_save_load_and_replay_on_a_fresh_model(tmp_path):
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.4)
    loaded = PruningPlan.load(plan.save(tmp_path / "plan"))
    assert loaded.removed == plan.removed and loaded.groups == plan.groups
    fresh = tfprune.models.build("resnet20", width_multiplier=0.25)
    tfprune.apply_plan(fresh, loaded)
    stage2 = next(g for g in channel_groups(fresh) if "stage2_block1_shortcut_conv" in g.sources)
    removed = ~loaded.keep[str(stage2.index)]
    for name in stage2.sources:  # the whole residual stream shares one mask
        assert np.all(fresh.get_layer(name).kernel.numpy()[..., removed] == 0)
    with pytest.raises(PlanError, match="another architecture"):
        tfprune.apply_plan(tfprune.models.build("resnet20", width_multiplier=0.5), loaded)


def test_mobilenet_depthwise_follows_its_pointwise_mask():
    model = tfprune.models.build("mobilenet_v1", width_multiplier=0.25)
    plan = tfprune.make_plan(model, tfprune.score(model, "random"), 0.5)
    tfprune.apply_plan(model, plan)
    group = next(g for g in channel_groups(model) if "block1_pw_conv" in g.sources)
    removed = ~plan.keep[str(group.index)]
    assert removed.any()
    assert np.all(model.get_layer("block2_dw_conv").kernel.numpy()[:, :, removed, :] == 0)
    assert np.all(model.get_layer("block2_pw_conv").kernel.numpy()[:, :, removed, :] == 0)


def test_masked_outputs_equal_the_model_with_those_weights_zeroed():
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=3), 0.5)
    zeroed = keras.models.clone_model(model)
    zeroed.set_weights(model.get_weights())
    for variable, mask in variable_masks(zeroed, plan):
        variable.assign(variable.numpy() * mask)
    enforcer = MaskEnforcer(model)
    enforcer.update(plan)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), zeroed(x, training=False), atol=1e-6)


def test_masks_hold_under_momentum_and_weight_decay_in_fit():
    model = tfprune.models.build("vgg11", width_multiplier=0.125, weight_decay=5e-4)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 64)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # momentum slots are non-zero now
    plan = tfprune.make_plan(model, tfprune.score(model, "magnitude"), 0.5)
    enforcer = MaskEnforcer(model)
    enforcer.install()
    model.make_train_function(force=True)
    enforcer.update(plan, model.optimizer)
    masks = variable_masks(model, plan)
    for variable, mask in masks:
        for slot in model.optimizer.variables:
            if slot.name.startswith(variable.path.replace("/", "_") + "_"):
                assert np.all(slot.numpy()[mask == 0] == 0)  # slots reset
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    for variable, mask in masks:
        assert np.all(variable.numpy()[mask == 0] == 0), variable.path
    assert any(np.any(variable.numpy()[mask == 1] != 0) for variable, mask in masks)


def test_unstructured_plans_mask_single_weights():
    model = two_conv_model()
    scores = tfprune.score(model, "magnitude", granularity="weight")
    plan = tfprune.make_plan(model, scores, 0.5)
    total = sum(v.size for v in scores.values())
    assert plan.granularity == "weight" and plan.removed == round(0.5 * total)
    tfprune.apply_plan(model, plan)
    kernel = model.get_layer("a").kernel.numpy()
    assert np.all(kernel[~plan.keep["a"]] == 0)


def test_random_and_uniform_draw_once_per_group_on_residual_streams(tmp_path):
    """A residual stream has several source layers; it must not be spared for that."""
    model = tfprune.models.build("resnet20", width_multiplier=0.5)
    groups = channel_groups(model)
    streams = [g for g in groups if len(g.sources) > 1]
    assert streams
    uniform = tfprune.make_plan(model, tfprune.score(model, "uniform"), 0.6, min_keep=0.0)
    assert uniform.settings["reduction"] == "first"
    for group in groups:  # the same fraction from every group, streams included
        assert abs((~uniform.keep[str(group.index)]).mean() - 0.6) <= 1 / group.size
    scores = tfprune.score(model, "random", seed=1)
    scores = type(scores).load(scores.save(tmp_path / "random"))  # the reduction is kept
    plan = tfprune.make_plan(model, scores, 0.6, reduction="sum")
    removed = sum((~plan.keep[str(g.index)]).sum() for g in streams)
    total = sum(g.size for g in streams)
    assert 0.3 < removed / total < 0.9  # summed draws (reduction "sum") removed none
    np.testing.assert_array_equal(plan.scores[str(streams[0].index)],
                                  scores[streams[0].sources[0]])


def test_import_tfprune_is_all_a_pruned_model_file_needs_to_load(tmp_path):
    import subprocess
    import sys
    import textwrap

    import keras

    import tfprune

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    scores = tfprune.score(model, "magnitude")
    tfprune.apply_plan(model, tfprune.make_plan(model, scores, 0.5))
    model.compile("sgd", tfprune.losses.TemperatureCrossEntropy(5.0))
    model.save(tmp_path / "pruned.keras")

    def load(imports):
        script = textwrap.dedent(f"""
            {imports}
            import keras
            model = keras.saving.load_model({str(tmp_path / 'pruned.keras')!r})
            print("kept", int(sum(abs(model.get_layer("conv").kernel.numpy()).sum((0, 1, 2))
                                  > 0)))
        """)
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=120)

    plain = load("")  # plain Keras does not know tfprune's objects
    assert plain.returncode != 0 and "tfprune>" in plain.stderr
    result = load("import tfprune")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "kept 2"
