"""keras-hub task models: scored with their compiled loss on raw data passed through their
preprocessor; slimmed like the masked task; the slimmed ViT and BERT classifiers export to
LiteRT and compute the same there."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune.export.model_io import named_outputs
from tfprune.export.tflite import export_tflite, run_tflite_for

VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
              *"the quick brown fox jumps over lazy dog a cat sat on mat".split()]
TEXTS = ["the quick brown fox", "a cat sat on the mat", "lazy dog", "the dog jumps over a cat"]
LABELS = np.arange(16) % 3


def _text_task():
    keras.utils.set_random_seed(0)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=VOCABULARY), sequence_length=8)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=2,
                                             num_heads=2, hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=8)
    task = keras_hub.models.BertTextClassifier(backbone, num_classes=3,
                                               preprocessor=preprocessor)
    raw = tf.data.Dataset.from_tensor_slices((TEXTS * 4, LABELS)).batch(4)
    return task, raw, preprocessor(tf.constant(TEXTS))


def _image_task():
    keras.utils.set_random_seed(0)
    preprocessor = keras_hub.models.ViTImageClassifierPreprocessor(
        image_converter=keras_hub.layers.ViTImageConverter(image_size=(32, 32)))
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8,
                                            num_layers=2, num_heads=2, hidden_dim=16,
                                            mlp_dim=32)
    task = keras_hub.models.ViTImageClassifier(backbone, num_classes=3,
                                               preprocessor=preprocessor)
    images = np.random.default_rng(0).random((16, 48, 48, 3)).astype("float32") * 255
    return task, (images, LABELS), preprocessor(images[:4])


@pytest.fixture(scope="module", params=["text", "image"])
def pruned_task(request):
    task, raw, inputs = (_text_task if request.param == "text" else _image_task)()
    scores = tfprune.score(task, "snip", raw, num_samples=16, batch_size=4)
    plan = tfprune.make_plan(task, scores, 0.4)
    with pytest.warns(UserWarning, match="call the task's preprocessor"):
        slimmed = tfprune.slim(task, plan)
    return task, scores, plan, slimmed, inputs


def test_raw_data_goes_through_the_preprocessor_into_the_compiled_loss(pruned_task):
    """The scores are those of the task's own loss on its preprocessed inputs."""
    task, scores, _, _, _ = pruned_task
    assert task.loss is not None
    assert all(np.all(np.isfinite(v)) for v in scores.values())
    assert any(key.endswith("/heads") for key in scores)
    head = scores[next(key for key in scores if key.endswith("/heads"))]
    assert np.all(head > 0)  # gradients reached the heads through the tokenized text


def test_the_slimmed_task_predicts_like_the_masked_one(pruned_task):
    task, _, plan, slimmed, inputs = pruned_task
    masked = keras.models.clone_model(task)
    masked.set_weights(task.get_weights())
    tfprune.apply_plan(masked, plan)
    expected = masked.predict(inputs, verbose=0)
    np.testing.assert_allclose(slimmed.predict(inputs, verbose=0), expected,
                               atol=1e-5 * np.abs(expected).max())
    assert slimmed.count_params() < task.count_params()


def test_the_slimmed_task_exports_to_litert(pruned_task, tmp_path):
    _, _, _, slimmed, inputs = pruned_task
    path = export_tflite(slimmed, tmp_path / "slim.tflite")
    lite = run_tflite_for(path, slimmed, inputs)
    expected = named_outputs(slimmed, slimmed(inputs, training=False))
    for name, value in expected.items():
        np.testing.assert_allclose(lite[name], value, atol=1e-3 * np.abs(value).max())
