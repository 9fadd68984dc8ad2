"""Each built-in measure against its formula on a hand-computed two-filter example."""

import keras
import numpy as np
import pytest

from tfprune.importance import (
    ScoringContext,
    ScoringError,
    available_measures,
    get_measure,
    serialize_measure,
)

# One 1x1 conv with two input channels and two filters: kernel[0, 0, i, p].
THETA = np.array([[1.0, 3.0], [-2.0, 0.5]])       # columns are filters 0 and 1
G = np.array([[0.5, -1.0], [0.25, 2.0]])
HG = np.array([[2.0, -0.5], [3.0, 4.0]])
THETA0 = np.array([[0.5, 3.0], [-1.0, 1.0]])
GAMMA, BETA = np.array([0.5, -2.0]), np.array([1.0, 1.0])
G_GAMMA, G_BETA = np.array([2.0, 0.25]), np.array([-0.5, 3.0])

# Worked by hand from the arrays above (theta*g = [[.5, -3], [-.5, 1]],
# theta*Hg = [[2, -1.5], [-6, 2]], |theta - theta0| = [[.5, 0], [1, .5]]).
EXPECTED_FILTER = {
    "magnitude": [5.0, 9.25],
    "magnitude_l1": [3.0, 3.5],
    "loss_preservation": [0.0, 2.0],
    "snip": [1.0, 4.0],
    "proposed": [1.5, 9.5],
    "grasp": [-4.0, 0.5],
    "grasp_abs": [4.0, 0.5],
    "bn_scale": [0.5, 2.0],
    "taylor_fo": [0.25, 6.25],
    "distance_from_init": [1.25, 0.25],
}
EXPECTED_WEIGHT = {
    "magnitude": [[1.0, 9.0], [4.0, 0.25]],
    "magnitude_l1": [[1.0, 3.0], [2.0, 0.5]],
    "loss_preservation": [[0.5, 3.0], [0.5, 1.0]],
    "snip": [[0.5, 3.0], [0.5, 1.0]],
    "proposed": [[0.5, 9.0], [1.0, 0.5]],
    "grasp": [[2.0, -1.5], [-6.0, 2.0]],
    "grasp_abs": [[2.0, 1.5], [6.0, 2.0]],
    "taylor_fo": [[0.25, 9.0], [0.25, 1.0]],
    "distance_from_init": [[0.25, 0.0], [1.0, 0.25]],
}


def two_filter_context():
    """A context whose g and Hg are the hand-set arrays above (no data pass)."""
    inputs = keras.Input((1, 1, 2), dtype="float64")
    x = keras.layers.Conv2D(2, 1, use_bias=False, dtype="float64", name="conv")(inputs)
    x = keras.layers.BatchNormalization(dtype="float64", name="bn")(x)
    outputs = keras.layers.Dense(3, dtype="float64", name="out")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    conv, bn = model.get_layer("conv"), model.get_layer("bn")
    conv.kernel.assign(THETA.reshape(1, 1, 2, 2))
    bn.gamma.assign(GAMMA)
    bn.beta.assign(BETA)
    unused_data = (np.zeros((3, 1, 1, 2)), np.arange(3))  # g and Hg are set by hand below
    context = ScoringContext(model, unused_data,
                             initial_weights={"conv": THETA0.reshape(1, 1, 2, 2)})
    hand_set = {id(conv.kernel): G.reshape(1, 1, 2, 2), id(bn.gamma): G_GAMMA,
                id(bn.beta): G_BETA}
    hand_hg = {id(conv.kernel): HG.reshape(1, 1, 2, 2)}

    def per_variable(values):
        return [values.get(id(v), np.zeros(v.shape)) for v in model.trainable_variables]

    for temperature in (1.0, 200.0):
        context._gradients[temperature] = per_variable(hand_set)
        context._hessian_gradients[temperature] = (per_variable(hand_set), per_variable(hand_hg))
    return context


@pytest.mark.parametrize("name", sorted(EXPECTED_FILTER))
def test_filter_scores_match_the_hand_computed_example(name):
    scores = get_measure(name).score(two_filter_context(), "filter")
    assert list(scores) == ["conv"]
    np.testing.assert_allclose(scores["conv"], EXPECTED_FILTER[name], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED_WEIGHT))
def test_weight_scores_match_the_hand_computed_example(name):
    scores = get_measure(name).score(two_filter_context(), "weight")
    assert scores["conv"].shape == (1, 1, 2, 2)
    np.testing.assert_allclose(scores["conv"][0, 0], EXPECTED_WEIGHT[name], rtol=1e-12)


def test_proposed_with_distance_from_init():
    measure = get_measure("proposed", use_distance_from_init=True)
    scores = measure.score(two_filter_context(), "filter")
    # |theta - theta0| * |theta g|: filter 0: .5*.5 + 1*.5; filter 1: 0*3 + .5*1.
    np.testing.assert_allclose(scores["conv"], [0.75, 0.5], rtol=1e-12)


def test_loss_preservation_and_snip_differ_where_terms_cancel():
    context = two_filter_context()
    lp = get_measure("loss_preservation").score(context)["conv"]
    snip = get_measure("snip").score(context)["conv"]
    assert lp[0] == 0.0 and snip[0] == 1.0  # theta*g = (+.5, -.5) cancels in Eq. 3 only


def test_random_and_uniform_are_seeded_and_uniform_keeps_layer_fractions():
    context = two_filter_context()
    for name in ("random", "uniform"):
        first = get_measure(name, seed=3).score(context)["conv"]
        np.testing.assert_array_equal(first, get_measure(name, seed=3).score(context)["conv"])
        weights = get_measure(name, seed=3).score(context, "weight")["conv"]
        assert weights.shape == (1, 1, 2, 2) and np.all((weights > 0) & (weights <= 1))
    ranks = get_measure("uniform", seed=0).score(context, "weight")["conv"]
    np.testing.assert_array_equal(np.sort(ranks.ravel()), [0.25, 0.5, 0.75, 1.0])


def test_bn_scale_is_filter_only():
    with pytest.raises(ScoringError, match="bn_scale.*'filter'"):
        get_measure("bn_scale").score(two_filter_context(), "weight")


@pytest.mark.parametrize("name", available_measures())
def test_every_measure_round_trips_through_its_config(name):
    measure = get_measure(name)
    config = serialize_measure(measure)
    rebuilt = get_measure(config)
    assert type(rebuilt) is type(measure) and rebuilt.get_config() == measure.get_config()


def test_measure_configs_carry_options():
    grasp = get_measure("grasp")
    assert grasp.get_config() == {"temperature": 200.0}
    assert get_measure("grasp_abs").get_config() == {"temperature": 1.0}
    assert get_measure({"name": "grasp", "temperature": 1}).temperature == 1.0
    assert get_measure(grasp, temperature=5).temperature == 5.0


def test_unknown_measure_and_option_fail_clearly():
    with pytest.raises(ValueError, match=r"unknown importance measure 'magnitud'.*'magnitude'"):
        get_measure("magnitud")
    with pytest.raises(TypeError, match=r"takes options \['temperature'\]"):
        get_measure("snip", seeds=1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        get_measure("grasp", temperature=0)


def test_training_measure_fills_the_runs_temperature_and_seed():
    from tfprune.importance.measure_registry import training_measure

    assert training_measure("random", {}, 5.0, seed=2).get_config() == {"seed": 2}
    assert training_measure("uniform", {"seed": 7}, 5.0, seed=2).get_config() == {"seed": 7}
    assert training_measure("snip", {}, 5.0, seed=2).get_config() == {"temperature": 5.0}
    assert training_measure("grasp", {}, 5.0, seed=2).get_config() == {"temperature": 200.0}
    assert training_measure("magnitude", {}, 5.0).get_config() == {}
