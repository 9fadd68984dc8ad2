import pytest

from tfprune.config import ConfigError, apply_overrides, defaults, load_config, validate


def test_defaults_are_the_paper_recipe():
    config = validate({})
    assert config == defaults()
    assert config["train"]["lr_values"] == [0.1, 0.01, 0.001]
    assert config["train"]["lr_phases"] == [80, 40, 40]
    assert config["train"]["temperature"] == 5.0
    assert config["optimizer"] == {"momentum": 0.9, "nesterov": False, "weight_decay": 1e-4}
    assert config["data"]["batch_size"] == 128


def test_load_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: resnet20\ntrain:\n  epochs: 10\n")
    config = load_config(path, ["train.epochs=3", "data.train_per_class=50", "model.options={}"])
    assert config["model"]["name"] == "resnet20"
    assert config["train"]["epochs"] == 3
    assert config["data"]["train_per_class"] == 50


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"epoch": 3}}, r"unknown key train\.epoch; valid keys of train: epochs"),
        ({"trian": {}}, r"unknown section 'trian'; valid sections: model, data"),
        ({"train": {"epochs": 0}}, r"train\.epochs: invalid value 0; allowed: an integer > 0"),
        ({"train": {"epochs": -5}}, r"train\.epochs: invalid value -5"),
        ({"train": {"epochs": "ten"}}, r"train\.epochs: invalid value 'ten'"),
        ({"train": {"epochs": 2.5}}, r"train\.epochs"),
        ({"train": {"epochs": True}}, r"train\.epochs"),
        ({"optimizer": {"momentum": 1.5}}, r"optimizer\.momentum: .*\[0, 1\)"),
        ({"data": {"kind": "csv"}}, r"data\.kind: .*one of auto, tfds, cifar_archive"),
        ({"data": {"batch_size": None}}, r"data\.batch_size: must not be null"),
        ({"train": {"lr_values": [0.1]}}, r"lr_values has 1 entries but train\.lr_phases has 3"),
        ({"train": {"lr_phases": [1.5, 2, 3]}}, r"lr_phases: epoch counts must be integers"),
        ({"model": {"width_multiplier": 0}}, r"model\.width_multiplier"),
        ({"run": {"name": "a/b"}}, r"run\.name"),
    ],
)
def test_invalid_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=f"{path}: train.epochs"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("text", ["epochs=3", "train.epochs", ".x=1"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides({}, [text])


def test_files_that_are_no_configs_are_named(tmp_path, capsys):
    from tfprune.cli.main import main

    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: the config is empty. tfprune will not "
                                          r"train its defaults"):
        load_config(empty)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model: {name: vgg13}  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not a UTF-8 text file"):
        load_config(latin)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"a config is a mapping of sections"):
        load_config(listed)
    legacy = tmp_path / "model.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    assert main(["groups", str(legacy)]) == 2
    error = capsys.readouterr().err
    assert "model.h5: a legacy HDF5 Keras file" in error and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
