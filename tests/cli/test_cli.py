import json

import pytest

from tfprune.cli.main import main


def tiny_config(image_folder, epochs, prune=None):
    """A YAML config for a 1/16-width VGG-11 on the tests' image folder."""
    text = ("model: {name: vgg11, width_multiplier: 0.0625}\n"
            f"data: {{source: {image_folder}, batch_size: 9}}\n"
            f"train: {{epochs: {epochs}, verbose: 0}}\n")
    return text + (f"prune: {prune}\n" if prune else "")


def test_help_lists_train(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--set SECTION.KEY=VALUE" in out and "--resume RUN_DIR" in out


def test_invalid_config_exits_2_naming_the_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 0\n")
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tfprune train: error:" in err and "train.epochs: invalid value 0" in err


def test_missing_data_exits_2(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  source: {tmp_path / 'nope.zip'}\n")
    assert main(["train", str(path), "--set", f"run.dir={tmp_path / 'run'}"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_config_and_resume_are_exclusive(capsys):
    with pytest.raises(SystemExit):
        main(["train"])
    assert "give either CONFIG or --resume RUN_DIR" in capsys.readouterr().err


def test_train_and_resume_from_the_command_line(image_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(image_folder, epochs=2))
    run = tmp_path / "run"
    assert main(["train", str(config), "--set", f"run.dir={run}"]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {run}" in out and "test accuracy: final" in out
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2
    summary = (run / "summary.json").read_bytes()
    assert main(["train", "--resume", str(run)]) == 2  # already finished: nothing to resume
    assert "already finished" in capsys.readouterr().err
    assert (run / "summary.json").read_bytes() == summary


def test_groups_prints_the_channel_groups(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: resnet20, width_multiplier: 0.25}\n")
    assert main(["groups", str(config)]) == 0
    out = capsys.readouterr().out
    assert "12 groups, 112 prunable channels in model 'resnet20'" in out
    assert "stage2_block1_shortcut_conv" in out


USER_BUILDER = """
import keras

import tfprune


@tfprune.models.register_model("user_net_for_tests")
def user_net(width_multiplier=1.0, num_classes=10, input_shape=(32, 32, 3), **unused):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(int(20 * width_multiplier), 3, activation="relu", name="a")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))
"""


def test_a_users_model_builder_is_used_by_name_once_its_module_is_imported(
        tmp_path, monkeypatch, capsys):
    import sys

    from tfprune.models import registry

    (tmp_path / "user_models_for_tests.py").write_text(USER_BUILDER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    config = tmp_path / "c.yaml"
    config.write_text("model: {name: user_net_for_tests, width_multiplier: 0.5}\n")
    assert main(["groups", str(config)]) == 2
    error = capsys.readouterr().err
    assert "Unknown model 'user_net_for_tests'" in error and "tfprune --import MODULE" in error
    try:
        assert main(["--import", "user_models_for_tests", "groups", str(config)]) == 0
        assert "1 groups, 10 prunable channels" in capsys.readouterr().out
    finally:
        registry._BUILDERS.pop("user_net_for_tests", None)
        sys.modules.pop("user_models_for_tests", None)


def test_groups_of_a_users_keras_file_say_what_is_kept_whole_and_why(tmp_path, capsys):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, name="mixer")(x)
    x = keras.layers.LayerNormalization(axis=(1, 2, 3), name="norm")(x)  # over every axis
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 1, name="proj")(x))
    path = tmp_path / "mine.keras"
    keras.Model(inputs, keras.layers.Dense(3, name="logits")(x)).save(path)
    assert main(["groups", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ranked by stem" in out and "ranked by proj" in out
    assert "kept whole:\n  mixer (8 channels): 'norm': LayerNormalization" in out
    assert "logits (3 channels): a model output" in out
    assert "2 groups, 14 prunable channels in model mine.keras" in out
    assert main(["groups", str(path), "--ignore", "proj"]) == 0
    out = capsys.readouterr().out
    assert "1 groups, 8 prunable channels" in out and "  proj: ignored" in out
    assert main(["groups", str(tmp_path / "missing.keras")]) == 2
    assert "no such .keras file" in capsys.readouterr().err


def test_groups_of_grouped_query_attention_in_either_mode(tmp_path, capsys):
    import keras

    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(30, 8, name="embed")(tokens)
    y = keras.layers.GroupQueryAttention(head_dim=3, num_query_heads=4, num_key_value_heads=2,
                                         name="gqa")(x, x)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization()(x + y))
    path = tmp_path / "gqa.keras"
    keras.Model(tokens, keras.layers.Dense(3, name="logits")(pooled)).save(path)
    assert main(["groups", str(path)]) == 0
    assert "2 channels  ranked by gqa/query_groups" in capsys.readouterr().out
    assert main(["groups", str(path), "--gqa", "heads"]) == 0
    assert ("4 channels  ranked by gqa/query_heads  (removed evenly from 2 parts, 1 at a time)"
            in capsys.readouterr().out)


def test_prune_then_slim_from_the_command_line(image_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(
        image_folder, epochs=2,
        prune="{measure: proposed, target: 0.5, rounds: 2, num_samples: 12}"))
    run = tmp_path / "run"
    assert main(["prune", str(config), "--set", f"run.dir={run}"]) == 0
    out = capsys.readouterr().out
    assert "pruned 50.0% of prunable filters (86 of 172 kept)" in out
    assert main(["slim", str(run)]) == 0
    out = capsys.readouterr().out
    assert "block1_unit1_conv" in out and "params" in out and (run / "slim.keras").is_file()
    assert main(["slim", str(tmp_path)]) == 2
    assert "no model.keras" in capsys.readouterr().err
    assert main(["prune", str(config), "--set", f"run.dir={run}", "--set", "prune.rounds=3"]) == 2
    assert "prune.rounds: pruning may run until epoch 3" in capsys.readouterr().err
    assert main(["prune", str(config), "--set", f"run.dir={tmp_path / 'grasp'}", "--set",
                 "prune.measure=grasp"]) == 2  # the Hg memory wants 10 per class; there are 6
    assert "prune.samples_per_class: 10 per class requested" in capsys.readouterr().err
    assert not (tmp_path / "grasp" / "metrics.csv").exists()


def test_a_full_disk_during_training_is_one_line_with_how_to_resume(image_folder, tmp_path):
    import os
    import subprocess
    import sys
    import textwrap

    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(image_folder, epochs=2))
    # A file-size limit stands in for a full disk: the first checkpoint cannot be written.
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        from tfprune.cli.main import main
        sys.exit(main(["train", {str(config)!r}, "--set", "run.dir={tmp_path / 'run'}"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("tfprune train")]
    assert len(error) == 1 and "no space left on the device" in error[0], result.stderr
    assert "--resume RUN_DIR" in error[0] and "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp-" in p.name]


def test_a_lost_worker_is_one_line_in_a_cluster_and_raised_as_it_is_elsewhere(monkeypatch,
                                                                               capsys):
    import tensorflow as tf

    from tfprune.cli import main as cli

    original = cli.COMMANDS["train"]

    class LosesAWorker:
        add_parser = staticmethod(original.add_parser)

        @staticmethod
        def run(args):
            raise tf.errors.UnavailableError(None, None, "peer down")

    monkeypatch.setitem(cli.COMMANDS, "train", LosesAWorker)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(tf.errors.UnavailableError):
        cli.main(["train", "c.yaml"])
    monkeypatch.setenv("TF_CONFIG", "{}")
    assert cli.main(["train", "c.yaml"]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tfprune train: error: the cluster lost a worker (peer down)")
    assert "--resume RUN_DIR" in line
