import keras
import numpy as np
import pytest
from conftest import masked_copy

import tfprune
from tfprune.pruning import PlanError, PruningPlan, channel_groups


def random_plan(model, target, seed=0, min_keep=0.05):
    return tfprune.make_plan(model, tfprune.score(model, "random", seed=seed), target,
                             min_keep=min_keep)


def randomize_batch_norms(model, seed=0):
    """Non-trivial BN statistics, so slicing mistakes show in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, size=layer.moving_variance.shape))
            layer.beta.assign(rng.normal(size=layer.beta.shape) * 0.1)


def assert_equivalent(model, plan, input_shape=(32, 32, 3)):
    slimmed = tfprune.slim(model, plan)
    x = np.random.default_rng(1).normal(size=(4, *input_shape)).astype("float32")
    expected = masked_copy(model, plan)(x, training=False)
    np.testing.assert_allclose(slimmed(x, training=False), expected, atol=1e-4, rtol=1e-4)
    return slimmed


@pytest.mark.parametrize("name", ["vgg11", "mobilenet_v1", "resnet20"])
@pytest.mark.parametrize("target", [0.3, 0.7])
def test_slimmed_builders_match_their_masked_models(name, target):
    model = tfprune.models.build(name, width_multiplier=0.25)
    randomize_batch_norms(model)
    plan = random_plan(model, target)
    slimmed = assert_equivalent(model, plan)
    assert slimmed.count_params() < model.count_params()
    kept = plan.kept_per_layer()
    for layer_name, (left, _) in kept.items():
        assert slimmed.get_layer(layer_name).kernel.shape[-1] == left


def test_floor_of_one_channel_per_group():
    model = tfprune.models.build("vgg11", width_multiplier=0.125)
    plan = random_plan(model, 0.95, min_keep=0.0)
    assert min(plan.keep[k].sum() for k in plan.keep) == 1
    assert_equivalent(model, plan)


def test_slimmed_model_saves_loads_and_fine_tunes(tmp_path):
    model = tfprune.models.build("resnet20", width_multiplier=0.25)
    slimmed = tfprune.slim(model, random_plan(model, 0.5))
    slimmed.save(tmp_path / "slim.keras")
    loaded = keras.models.load_model(tmp_path / "slim.keras")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), slimmed(x, training=False), atol=1e-6)
    loaded.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    history = loaded.fit(x, np.arange(8) % 10, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_squeeze_excite_concatenate_and_flatten():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.ZeroPadding2D(1)(x)
    a = keras.layers.Conv2D(6, 3, name="a")(x)
    gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(a)
    gate = keras.layers.Conv2D(3, 1, activation="relu", name="squeeze")(gate)
    gate = keras.layers.Conv2D(6, 1, activation="sigmoid", name="excite")(gate)
    a = keras.layers.Multiply()([a, gate])
    b = keras.layers.Conv2D(4, 3, name="b")(x)
    joined = keras.layers.Concatenate()([a, b])
    flat = keras.layers.Flatten()(keras.layers.MaxPooling2D(4)(joined))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5, name="hidden")(flat)))
    plan = random_plan(model, 0.4)
    assert_equivalent(model, plan, input_shape=(8, 8, 3))


def test_separable_convs_with_depth_multiplier_and_a_residual():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.SeparableConv2D(5, 3, depth_multiplier=3, padding="same", name="sep1")(
        keras.layers.ReLU()(x))
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.SeparableConv2D(8, 3, strides=2, padding="same", use_bias=False,
                                     name="sep2")(keras.layers.ReLU()(y))
    shortcut = keras.layers.Conv2D(8, 1, strides=2, name="shortcut")(x)
    x = keras.layers.Add()([keras.layers.BatchNormalization()(y), shortcut])
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    randomize_batch_norms(model)
    for target in (0.3, 0.6):
        plan = random_plan(model, target)
        slimmed = assert_equivalent(model, plan, input_shape=(8, 8, 3))
        for name in ("sep1", "sep2"):
            kept = slimmed.get_layer(name)
            assert kept.pointwise_kernel.shape[-2] == kept.depthwise_kernel.shape[-2] * (
                kept.depth_multiplier)
        assert slimmed.get_layer("sep2").filters == plan.kept_per_layer()["sep2"][0] < 8


def test_separable_conv1d():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 4))
    x = keras.layers.Conv1D(6, 3, padding="same", name="stem")(inputs)
    x = keras.layers.SeparableConv1D(5, 3, depth_multiplier=2, name="sep")(x)
    x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, x)
    slimmed = assert_equivalent(model, random_plan(model, 0.5), input_shape=(16, 4))
    assert slimmed.count_params() < model.count_params()


# MobileNet (v1) is in tests/golden; VGG16 is a plain chain of convolutions, as the builders'.
@pytest.mark.parametrize("application", ["MobileNetV2", "ResNet50", "EfficientNetB0",
                                         "DenseNet121"])
def test_keras_applications_slim(application):
    model = getattr(keras.applications, application)(
        weights=None, input_shape=(32, 32, 3), classes=10)
    randomize_batch_norms(model)
    assert_equivalent(model, random_plan(model, 0.5))


def test_xception_slim():
    """Xception: separable convs in residual blocks (its smallest input is 71x71)."""
    model = keras.applications.Xception(weights=None, input_shape=(71, 71, 3), classes=10)
    randomize_batch_norms(model)
    slimmed = assert_equivalent(model, random_plan(model, 0.5), input_shape=(71, 71, 3))
    assert slimmed.count_params() < 0.5 * model.count_params()


def test_unstructured_plans_and_other_architectures_are_refused():
    model = tfprune.models.build("vgg11", width_multiplier=0.125)
    weights = tfprune.make_plan(model, tfprune.score(model, "magnitude", granularity="weight"),
                                0.5)
    with pytest.raises(PlanError, match="structured"):
        tfprune.slim(model, weights)
    plan = random_plan(model, 0.5)
    other = tfprune.models.build("vgg11", width_multiplier=0.25)
    with pytest.raises(PlanError, match="another architecture"):
        tfprune.slim(other, PruningPlan.load(plan.save("/tmp/tfprune-slim-plan")))
    assert channel_groups(model)


class _OwnTraining(keras.Model):
    """A model class built functionally that trains its own way."""

    def __init__(self):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3, name="conv")(inputs))
        super().__init__(inputs, keras.layers.Dense(3, name="head")(x), name="own")

    def train_step(self, data):
        return super().train_step(data)


def test_a_models_own_methods_that_slim_cannot_carry_over_are_named(recwarn):
    model = _OwnTraining()
    plan = random_plan(model, 0.5)
    with pytest.warns(UserWarning, match=r"'own' is a _OwnTraining.*without _OwnTraining's "
                                         r"methods \(train_step\)"):
        slimmed = assert_equivalent(model, plan, input_shape=(8, 8, 3))
    assert type(slimmed) is not _OwnTraining
    recwarn.clear()
    tfprune.slim(tfprune.models.build("vgg11", width_multiplier=0.125), random_plan(
        tfprune.models.build("vgg11", width_multiplier=0.125), 0.5))
    assert not [w for w in recwarn if "subclass" in str(w.message)]  # plain models: silent


def test_named_inputs_and_outputs_keep_their_structure():
    # A dict of inputs and a dict of outputs (a classifier head and a regression head):
    # the slimmed model takes and returns the same dicts, so the user's compile(loss={...})
    # and code reading outputs by name keep working.
    image = keras.Input((8, 8, 3), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, extra])
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    outputs = {"cls": keras.layers.Dense(3, activation="softmax", name="cls")(x),
               "reg": keras.layers.Dense(1, name="reg")(x)}
    model = keras.Model({"image": image, "extra": extra}, outputs)
    plan = random_plan(model, 0.5)
    slimmed = tfprune.slim(model, plan)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(4, 8, 8, 3)).astype("float32"),
             "extra": rng.normal(size=(4, 4)).astype("float32")}
    got, expected = slimmed(batch), masked_copy(model, plan)(batch)
    assert isinstance(got, dict) and sorted(got) == ["cls", "reg"]
    for name in ("cls", "reg"):
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5)
    assert slimmed.get_layer("hidden").units < 32
    slimmed.compile("adam", {"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    slimmed.fit(batch, {"cls": np.arange(4) % 3, "reg": np.zeros((4, 1))}, verbose=0)


def _adapted_preprocessing_model(kind):
    """A model with an adapted preprocessing layer at its input, and inputs for it."""
    rng = np.random.default_rng(0)
    layers = keras.layers
    keras.utils.set_random_seed(0)
    if kind == "string_lookup":
        data = np.array([["a", "b", "c"], ["d", "a", "zz"], ["c", "c", "b"]] * 4)
        lookup = layers.StringLookup()
        lookup.adapt(data)
        inputs = keras.Input((3,), dtype="string")
        x = layers.GlobalAveragePooling1D()(layers.Embedding(8, 8)(lookup(inputs)))
    elif kind == "integer_lookup":
        data = rng.choice([3, 17, 40, 99], size=(12, 3)).astype("int64")
        lookup = layers.IntegerLookup()
        lookup.adapt(data)
        inputs = keras.Input((3,), dtype="int64")
        x = layers.GlobalAveragePooling1D()(layers.Embedding(8, 8)(lookup(inputs)))
    elif kind == "text_tf_idf":
        data = np.array(["the cat sat", "the dog ran far", "a cat ran"] * 4)
        vectorize = layers.TextVectorization(max_tokens=20, output_mode="tf_idf")
        vectorize.adapt(data)
        inputs = keras.Input((), dtype="string")
        x = vectorize(inputs)
    else:  # discretized and counted
        data = rng.normal(size=(12, 3)).astype("float32")
        bins = layers.Discretization(num_bins=4)
        bins.adapt(data)
        inputs = keras.Input((3,))
        x = layers.CategoryEncoding(num_tokens=4, output_mode="count")(bins(inputs))
    x = layers.Dense(12, activation="relu", name="hidden")(x)
    return keras.Model(inputs, layers.Dense(2, name="head")(x)), data


@pytest.mark.parametrize("kind", ["string_lookup", "integer_lookup", "text_tf_idf",
                                  "discretization"])
def test_adapted_preprocessing_layers_keep_their_vocabulary_in_the_slimmed_model(kind):
    # An adapted vocabulary lives in the layer's assets, not its config or weights: rebuilt
    # from its config alone, a lookup maps every token to out-of-vocabulary.
    model, data = _adapted_preprocessing_model(kind)
    plan = tfprune.make_plan(model, tfprune.score(model, "random", seed=1), 0.5)
    slimmed = tfprune.slim(model, plan)
    assert slimmed.get_layer("hidden").units < 12
    # masked in place: keras.models.clone_model (masked_copy) loses the vocabulary too
    np.testing.assert_allclose(slimmed(data), tfprune.apply_plan(model, plan)(data), atol=1e-5)
