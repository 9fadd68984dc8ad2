"""Loading users' model files: safe mode, custom objects by ``--import``, clear errors."""

from __future__ import annotations

import importlib
import sys
import textwrap
import zipfile

import keras
import pytest

from tfprune.cli.main import main
from tfprune.model_files import ModelFileError, load_model_file

LAYERS_MODULE = textwrap.dedent('''
    import keras

    import tfprune
    from tfprune.handlers import LayerHandler, follow, take


    @keras.saving.register_keras_serializable("tfprune_test")
    class ChannelScale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.scale


    class ChannelScaleHandler(LayerHandler):
        def analyse(self, analysis, layer, inputs, outputs):
            follow(analysis, layer, inputs, outputs)

        def variable_masks(self, layer, in_mask, out_mask):
            return [] if in_mask is None else [(layer.scale, in_mask.astype("float32"))]

        def slim(self, layer, context):
            return layer.get_config(), [take(layer.get_weights()[0],
                                             context.input_index(layer), -1)]


    tfprune.register_layer_handler(ChannelScale, ChannelScaleHandler())
''')


def conv_then(layer):
    inputs = keras.Input((8, 8, 3))
    x = layer(keras.layers.Conv2D(6, 3, name="conv")(inputs))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


@pytest.fixture
def users_module(tmp_path, monkeypatch):
    """A model file using a custom layer from the user's module, as a new process sees it.

    The module is imported to save the model, then forgotten (``sys.modules`` and Keras'
    registry), so loading needs it imported again.
    """
    (tmp_path / "my_layers.py").write_text(LAYERS_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    module = importlib.import_module("my_layers")
    path = tmp_path / "scaled.keras"
    conv_then(module.ChannelScale(name="scale")).save(path)
    sys.path.remove(str(tmp_path))
    del sys.modules["my_layers"]
    keras.saving.get_custom_objects().pop("tfprune_test>ChannelScale")
    yield path
    sys.modules.pop("my_layers", None)
    keras.saving.get_custom_objects().pop("tfprune_test>ChannelScale", None)


def test_a_custom_layer_loads_once_its_module_is_imported_with_the_cli_flag(users_module,
                                                                             capsys):
    assert main(["groups", str(users_module)]) == 2
    error = capsys.readouterr().err
    assert "uses the class 'ChannelScale'" in error
    assert "tfprune --import MODULE" in error and len(error.strip().splitlines()) == 1
    assert main(["--import", "my_layers", "groups", str(users_module)]) == 0
    out = capsys.readouterr().out
    assert "1 groups, 6 prunable channels" in out  # the handler from the module took `scale`


def test_an_import_that_fails_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["--import", "no_such_module_here", "groups", "x.keras"]) == 2
    assert ("--import no_such_module_here: cannot import it (ModuleNotFoundError"
            in capsys.readouterr().err)


def test_a_lambda_is_refused_without_running_its_code(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("TFPRUNE_TEST_MARKER", str(marker))  # a closure would not serialize
    model = conv_then(keras.layers.Lambda(lambda t: (__import__("pathlib").Path(
        __import__("os").environ["TFPRUNE_TEST_MARKER"]).write_text("ran"), t)[1]))
    path = tmp_path / "lambda.keras"
    model.save(path)
    marker.unlink()  # written once when the model was built
    with pytest.raises(ModelFileError, match=r"lambda.keras: model holds a Lambda layer.*"
                                             r"safe mode.*register_keras_serializable"):
        load_model_file(path)
    assert not marker.exists()


def test_files_that_are_no_keras_models_are_named(tmp_path):
    with pytest.raises(ModelFileError, match=r"missing.keras: no such file \(model\)"):
        load_model_file(tmp_path / "missing.keras")
    (tmp_path / "saved_model").mkdir()
    with pytest.raises(ModelFileError, match=r"saved_model: model is a folder.*SavedModel"):
        load_model_file(tmp_path / "saved_model")
    (tmp_path / "weights.npz").write_bytes(b"PK")
    with pytest.raises(ModelFileError, match=r"weights.npz: model is not a Keras model file"):
        load_model_file(tmp_path / "weights.npz")
    truncated = tmp_path / "truncated.keras"
    conv_then(keras.layers.ReLU()).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ModelFileError, match=r"truncated.keras: model cannot be loaded: not a "
                                             r"\.keras archive"):
        load_model_file(truncated)
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("notes.txt", "no model here")
    with pytest.raises(ModelFileError, match=r"empty.keras: finetune.source cannot be loaded "
                                             r"\(.*corrupted or truncated"):
        load_model_file(empty, what="finetune.source")


def test_a_good_file_loads_with_or_without_its_compiled_loss(tmp_path):
    model = conv_then(keras.layers.ReLU())
    model.compile("sgd", "mse")
    model.save(tmp_path / "good.keras")
    assert load_model_file(tmp_path / "good.keras").compiled is False
    assert load_model_file(tmp_path / "good.keras", compile=True).loss == "mse"
