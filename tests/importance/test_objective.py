"""Gradient measures take the model's own loss: any outputs, losses, weights and data forms.

Each g is checked against an independent ``tf.GradientTape`` over a loss written
out by hand on the whole batch.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.importance import ScoringError
from tfprune.importance.context import ScoringContext

RNG = np.random.default_rng(0)
X = RNG.normal(size=(24, 6, 6, 3)).astype("float32")
CLASSES = (np.arange(24) % 3).astype("int64")
VALUES = RNG.uniform(0, 1, size=(24, 2)).astype("float32")  # regression targets in [0, 1)
WEIGHTS = RNG.uniform(0.2, 2.0, size=24).astype("float32")


def trunk(inputs):
    x = keras.layers.Conv2D(5, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))


def two_heads():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = trunk(inputs)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    label = keras.layers.Dense(3, activation="softmax", name="label")(x)
    box = keras.layers.Dense(2, name="box")(x)
    return keras.Model(inputs, [label, box])


def regressor(activation=None, units=2):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Dense(6, activation="relu", name="hidden")(trunk(inputs))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation, name="out")(x))


def manual_gradient(model, loss_fn):
    with tf.GradientTape() as tape:
        loss = loss_fn(model(X, training=False))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


def scored_gradient(model, data, temperature=1.0, **options):
    context = ScoringContext(model, data, num_samples=24, batch_size=24, **options)
    return context.gradients(temperature), context


def assert_same(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=2e-4, atol=1e-7)


def test_two_outputs_with_loss_weights_and_sample_weights_use_the_compiled_loss():
    model = two_heads()
    model.compile("sgd", loss={"label": "sparse_categorical_crossentropy", "box": "mse"},
                  loss_weights={"label": 0.5, "box": 3.0})

    def by_hand(outputs):
        probabilities, box = outputs
        logits = tf.math.log(probabilities)  # softmax is shift-invariant: same cross-entropy
        ce = keras.losses.sparse_categorical_crossentropy(CLASSES, logits, from_logits=True)
        mse = tf.reduce_mean((box - VALUES) ** 2, axis=-1)
        return 0.5 * tf.reduce_mean(ce * WEIGHTS) + 3.0 * tf.reduce_mean(mse * WEIGHTS)

    actual, context = scored_gradient(model, (X, {"label": CLASSES, "box": VALUES}, WEIGHTS))
    assert_same(actual, manual_gradient(model, by_hand))
    assert context.loss_used == ["label: sparse_categorical_crossentropy on logits / T x 0.5",
                                 "box: mean_squared_error on the outputs x 3"]
    # targets as a list in output order give the same
    listed, _ = scored_gradient(model, (X, [CLASSES, VALUES], WEIGHTS))
    assert_same(listed, actual)


def test_regression_scores_are_the_mse_gradients_not_zero():
    """Targets in [0, 1) once became class 0 everywhere: all-zero scores and a plan anyway."""
    model = regressor()
    model.compile("adam", "mse")
    actual, _ = scored_gradient(model, (X, VALUES))
    assert_same(actual, manual_gradient(
        model, lambda out: tf.reduce_mean(tf.reduce_mean((out - VALUES) ** 2, axis=-1))))
    scores = tfprune.score(model, "grasp_abs", (X, VALUES), samples_per_class=2)
    assert scores.metadata["samples"]["hessian"] == 20  # a random memory of 2 x 10
    assert all(np.any(values != 0) for values in scores.values())
    tfprune.make_plan(model, scores, 0.4)


def test_a_sigmoid_binary_classifier_is_scored_with_binary_cross_entropy_on_its_logits():
    keras.utils.set_random_seed(0)
    probabilities = regressor("sigmoid", units=1)
    probabilities.compile("sgd", "binary_crossentropy")
    logits = regressor(None, units=1)
    logits.set_weights(probabilities.get_weights())
    logits.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True))
    labels = (np.arange(24) % 2).astype("float32")
    expected = manual_gradient(logits, lambda z: tf.reduce_mean(
        keras.losses.binary_crossentropy(labels[:, None], z, from_logits=True)))
    assert_same(scored_gradient(probabilities, (X, labels))[0], expected)
    assert_same(scored_gradient(logits, (X, labels))[0], expected)
    # GraSP at T = 200 divides the logits: the memory is class-balanced over the 2 classes
    scores = tfprune.score(probabilities, "grasp", (X, labels), samples_per_class=4)
    assert scores.metadata["samples"]["hessian"] == 8
    reference = tfprune.score(logits, "grasp", (X, labels), samples_per_class=4)
    for name in scores:
        np.testing.assert_allclose(scores[name], reference[name], rtol=1e-4, atol=1e-12)


def test_a_compiled_temperature_loss_scores_as_the_uncompiled_paper_path():
    model = tfprune.models.build("vgg11", width_multiplier=0.125, input_shape=(32, 32, 3),
                                 num_classes=3)
    x = RNG.normal(size=(12, 32, 32, 3)).astype("float32")
    y = np.arange(12) % 3
    before = tfprune.score(model, "snip", (x, y), num_samples=12, temperature=5.0)
    model.compile("sgd", tfprune.losses.TemperatureCrossEntropy(5.0))
    after = tfprune.score(model, "snip", (x, y), num_samples=12, temperature=5.0)
    for name in before:
        np.testing.assert_allclose(after[name], before[name], rtol=1e-6)


def test_categorical_cross_entropy_with_label_smoothing_keeps_its_options():
    model = regressor("softmax", units=3)
    model.compile("sgd", keras.losses.CategoricalCrossentropy(label_smoothing=0.2))
    one_hot = np.eye(3, dtype="float32")[CLASSES]
    smoothed = one_hot * 0.8 + 0.2 / 3

    def by_hand(probabilities):
        return tf.reduce_mean(-tf.reduce_sum(smoothed * tf.math.log(probabilities), axis=-1))

    expected = manual_gradient(model, by_hand)
    assert_same(scored_gradient(model, (X, one_hot))[0], expected)
    assert_same(scored_gradient(model, (X, CLASSES))[0], expected)  # ids become one-hot rows


def test_data_forms_give_the_same_scores():
    model = regressor("softmax", units=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    expected, _ = scored_gradient(model, (X, CLASSES))

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            return X[index * 8:(index + 1) * 8], CLASSES[index * 8:(index + 1) * 8]

    tfds_like = tf.data.Dataset.from_tensor_slices({"image": X, "label": CLASSES})
    named = tf.data.Dataset.from_tensor_slices({"pixels": X, "digit": CLASSES, "w": WEIGHTS})
    for data, options in (([X, CLASSES], {}), (Batches(), {}), (tfds_like, {}),
                          (tf.data.Dataset.from_tensor_slices((X, CLASSES)).batch(5), {}),
                          (named, {"data_keys": ("pixels", "digit")}),
                          (named.map(lambda e: {**e, "w": tf.ones_like(e["w"])}),
                           {"data_keys": ("pixels", "digit", "w")})):
        actual, context = scored_gradient(model, data, **options)
        assert context.samples_used["gradient"] == 24
        assert_same(actual, expected)
    with pytest.raises(tfprune.data.DataError, match="keys.*'digit'.*missing.*data_keys"):
        scored_gradient(model, named)


def test_class_ids_shaped_n_by_1_score_as_flat_ones_in_any_order():
    # keras.datasets give labels of shape (N, 1). Scoring once with (N,) labels and then with
    # (N, 1) ones used to retrace the cached gradient function for targets of unknown rank,
    # which Keras' sparse cross-entropy cannot take.
    model = regressor("softmax", units=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    flat, _ = scored_gradient(model, (X, CLASSES))
    column, _ = scored_gradient(model, (X, CLASSES[:, None]))
    assert_same(column, flat)
    grasp = tfprune.score(model, "grasp", (X, CLASSES[:, None]), samples_per_class=2)
    assert_same(grasp.values(), tfprune.score(model, "grasp", (X, CLASSES),
                                              samples_per_class=2).values())


def test_regression_targets_of_either_rank_score_alike_in_any_order():
    model = regressor(units=1)
    model.compile("sgd", "mse")
    flat, _ = scored_gradient(model, (X, VALUES[:, 0]))
    column, _ = scored_gradient(model, (X, VALUES[:, :1]))  # a new trace for rank 2
    assert_same(column, flat)
    expected = manual_gradient(model, lambda out: tf.reduce_mean((out - VALUES[:, :1]) ** 2))
    assert_same(flat, expected)


def test_targets_that_are_no_class_ids_are_named_before_the_memory_is_drawn():
    model = regressor("softmax", units=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    for measure in ("snip", "grasp"):  # grasp used to say "class 0 has 0 examples"
        with pytest.raises(ScoringError, match=r"not class ids in \[0, 3\).*\[1, 2, 3\]"):
            tfprune.score(model, measure, (X, CLASSES + 1), samples_per_class=2)


def test_two_inputs_and_dict_inputs():
    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 3), name="image")
    extra = keras.Input((4,), name="extra")
    x = keras.layers.Concatenate()([trunk(image), keras.layers.Dense(3, name="side")(extra)])
    model = keras.Model({"image": image, "extra": extra},
                        keras.layers.Dense(3, name="out")(x))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    side = RNG.normal(size=(24, 4)).astype("float32")
    inputs = {"image": X, "extra": side}
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            CLASSES, model(inputs, training=False), from_logits=True))
    expected = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    assert_same(scored_gradient(model, (inputs, CLASSES))[0], expected)
    scores = tfprune.score(model, "grasp", (inputs, CLASSES), samples_per_class=3)
    assert set(scores) >= {"conv", "side"}


def test_an_uncompiled_model_whose_loss_cannot_be_guessed_is_refused():
    model = two_heads()
    with pytest.raises(ScoringError, match="2 outputs and is not compiled.*loss="):
        tfprune.score(model, "snip", (X, [CLASSES, VALUES]))
    model = regressor()  # two linear units, uncompiled: treated as class logits
    with pytest.raises(ScoringError, match="not class ids.*compile it with its loss"):
        tfprune.score(model, "snip", (X, VALUES))
    scores = tfprune.score(model, "snip", (X, VALUES), loss="mse")  # or say which loss
    assert scores.metadata["loss"] == ["out: mean_squared_error on the outputs"]


def test_a_temperature_that_cannot_apply_is_reported_once():
    model = regressor()
    model.compile("sgd", "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tfprune.score(model, "grasp", (X, VALUES), samples_per_class=2)
    messages = [str(w.message) for w in caught if "temperature" in str(w.message)]
    assert len(messages) == 1 and "temperature 200 is not applied" in messages[0]


def test_pruning_callback_prunes_a_multi_output_model_inside_fit():
    model = two_heads()
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"])
    data = (X, (CLASSES, VALUES))
    callback = tfprune.pruning.PruningCallback(
        "proposed", tfprune.pruning.RoundsSchedule(0.5, rounds=1), data)
    model.fit(X, (CLASSES, VALUES), epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    assert callback.plan is not None and callback.plan.removed > 0


def test_a_segmenter_is_scored_per_pixel_with_a_random_memory():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax", name="mask")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    images = RNG.normal(size=(30, 8, 8, 3)).astype("float32")
    masks = RNG.integers(0, 3, size=(30, 8, 8))
    with tf.GradientTape() as tape:
        logits = tf.math.log(model(images, training=False))
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            masks, logits, from_logits=True))
    expected = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
    context = ScoringContext(model, (images, masks), num_samples=30, batch_size=30)
    assert_same(context.gradients(1.0), expected)
    scores = tfprune.score(model, "grasp_abs", (images, masks), samples_per_class=2)
    assert scores.metadata["samples"]["hessian"] == 20  # 2 x 10 at random, not per class


def keras_loss_gradient(model, inputs, targets, sample_weight=None):
    """The gradient of the model's compiled loss, taken by Keras' ``compute_loss`` as in ``fit``."""
    with tf.GradientTape() as tape:
        loss = model.compute_loss(inputs, targets, model(inputs, training=False), sample_weight)
    return [tf.convert_to_tensor(g).numpy()  # an embedding's gradient comes as IndexedSlices
            for g in tape.gradient(loss, model.trainable_variables)]


def test_a_segmenter_with_an_ignore_class_is_scored_on_its_labelled_pixels():
    # Pascal VOC-style borders (255) were refused as "not class ids"; now they count for
    # nothing, as in Keras' loss, which averages over the labelled pixels only.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, name="mask")(x))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                     ignore_class=255))
    images = RNG.normal(size=(30, 8, 8, 3)).astype("float32")
    masks = RNG.integers(0, 3, size=(30, 8, 8))
    masks[:, :3] = 255
    masks[:10] = 255  # a third of the images wholly unlabelled
    context = ScoringContext(model, (images, masks), num_samples=30, batch_size=30)
    assert_same(context.gradients(1.0), keras_loss_gradient(model, images, masks))
    assert np.all(np.isfinite(tfprune.score(model, "grasp", (images, masks),
                                            samples_per_class=2)["conv"]))
    masks[0, 5, 5] = 7  # neither a class nor the ignored one
    with pytest.raises(ScoringError, match=r"besides its ignore_class 255.*\[0, 1, 2, 7\]"):
        tfprune.score(model, "snip", (images, masks))


def masked_tagger():
    """Token classification over padded sequences: the padding is masked (mask_zero)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((9,), dtype="int32")
    x = keras.layers.Embedding(40, 6, mask_zero=True, name="embed")(inputs)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="tags")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    tokens = RNG.integers(1, 40, size=(24, 9)).astype("int32")
    for row, length in enumerate(RNG.integers(2, 9, size=24)):
        tokens[row, length:] = 0
    return model, tokens, RNG.integers(0, 4, size=(24, 9))


def test_a_masked_sequence_tagger_is_scored_on_its_tokens_not_its_padding():
    # Keras' loss leaves masked positions out; the scores took the padding's loss as well
    # (35-47% off on this model), ranking channels by a loss the model never trains on.
    model, tokens, tags = masked_tagger()
    context = ScoringContext(model, (tokens, tags), num_samples=24, batch_size=24)
    expected = keras_loss_gradient(model, tokens, tags)
    assert_same(context.gradients(1.0), expected)
    unmasked = manual_gradient_of(model, tokens, tags)
    assert not np.allclose(unmasked[0], expected[0], rtol=0.05)  # the mask matters here
    weights = RNG.uniform(0.2, 2.0, size=(24, 1)).astype("float32")  # per sequence
    per_token = np.repeat(weights, 9, axis=1)  # the form Keras takes with a mask
    weighted = ScoringContext(model, (tokens, tags, per_token), num_samples=24, batch_size=24)
    assert_same(weighted.gradients(1.0), keras_loss_gradient(model, tokens, tags, per_token))
    by_sequence = ScoringContext(model, (tokens, tags, weights[:, 0]), num_samples=24,
                                 batch_size=24)
    assert_same(by_sequence.gradients(1.0), weighted.gradients(1.0))


def manual_gradient_of(model, tokens, tags):
    """The gradient of the mean cross-entropy over every position, padding included."""
    with tf.GradientTape() as tape:
        probabilities = tf.convert_to_tensor(model(tokens, training=False))  # mask dropped
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(tags, probabilities))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss,
                                                                   model.trainable_variables)]


class _ReconstructionLoss(keras.layers.Layer):
    """An autoencoder's loss, added inside the model (add_loss), not compiled."""

    def call(self, inputs, reconstruction):
        self.add_loss(keras.ops.mean((inputs - reconstruction) ** 2))
        return reconstruction


def test_a_model_compiled_without_a_loss_is_refused_before_any_epoch():
    # Guessing a cross-entropy here would rank channels by a loss the model never trains on.
    from tfprune.pruning import PruningCallback, RoundsSchedule

    inputs = keras.Input((6,))
    code = keras.layers.Dense(8, activation="relu", name="encoder")(inputs)
    outputs = _ReconstructionLoss(name="reconstruction")(inputs, keras.layers.Dense(6)(code))
    model = keras.Model(inputs, outputs)
    model.compile("sgd")
    x = RNG.normal(size=(24, 6)).astype("float32")
    classes = np.arange(24) % 6  # class ids a guessed cross-entropy would have accepted
    with pytest.raises(ScoringError, match="compiled without a loss.*add_loss"):
        tfprune.score(model, "snip", (x, classes), num_samples=24)
    pruner = tfprune.Pruner(model, "proposed", (x, classes), ignored_layers=["reconstruction"])
    weights = model.get_weights()
    with pytest.raises(ScoringError, match="compiled without a loss"):
        model.fit(x, epochs=1, verbose=0,
                  callbacks=[PruningCallback(pruner, RoundsSchedule(0.5, rounds=1))])
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    # With the loss given, it is scored.
    scores = tfprune.score(model, "snip", (x, x), loss="mse", num_samples=24)
    assert np.all(np.isfinite(scores["encoder"])) and scores["encoder"].sum() > 0


def test_missing_targets_and_custom_train_steps_are_reported():
    model = regressor()
    model.compile("sgd", "mse")
    with pytest.raises(ScoringError, match=r"no targets for the outputs \['out'\] \(y is None\)"):
        tfprune.score(model, "snip", (X, None), num_samples=24)

    class CustomStep(keras.Model):
        def train_step(self, data):  # trains on something the compiled loss may not be
            return super().train_step(data)

    inputs = keras.Input((6, 6, 3))
    custom = CustomStep(inputs, keras.layers.Dense(2, name="out")(trunk(inputs)))
    custom.compile("sgd", "mse")
    with pytest.warns(UserWarning, match="overrides train_step or compute_loss"):
        tfprune.score(custom, "snip", (X, VALUES), num_samples=24)


def test_a_ctc_model_is_scored_on_its_targets_as_keras_takes_them():
    # keras.io's OCR example: (batch, length) label sequences against (batch, time, classes)
    # outputs. Targets were expanded to (..., 1) because their rank is one less, which CTC
    # refuses; Keras expands only when the output's last axis is 1.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 5))
    x = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(6, name="chars")(x))
    model.compile("adam", keras.losses.CTC())
    features = RNG.normal(size=(8, 12, 5)).astype("float32")
    labels = RNG.integers(1, 6, size=(8, 4)).astype("int32")
    context = ScoringContext(model, (features, labels), num_samples=8, batch_size=8)
    assert_same(context.gradients(1.0), keras_loss_gradient(model, features, labels))
    assert np.all(np.isfinite(tfprune.score(model, "snip", (features, labels))["hidden"]))
