import csv
import json

import keras
import numpy as np
import pytest
from interrupt import StopAfterEpoch

from tfprune.config import ConfigError, validate
from tfprune.data import DataError
from tfprune.training import resume_run, train


def tiny_config(image_folder, run_dir, epochs=3, **train_keys):
    return validate({
        "model": {"name": "vgg11", "width_multiplier": 0.0625},
        "data": {"source": str(image_folder), "batch_size": 6},
        "train": {"epochs": epochs, "verbose": 0, **train_keys},
        "run": {"dir": str(run_dir)},
    })



@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """One uninterrupted 3-epoch run, shared: its folder is checked, and resumes must end at it."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("trainer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFPRUNE_CACHE_DIR", str(root / "cache"))
        return train(tiny_config(write_image_folder(root / "images"), root / "run"))


def test_run_folder_contents(straight_run):
    result = straight_run
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "metrics.json", "summary.json", "model.keras",
                 "checkpoints/epoch_0003.keras", "checkpoints/state.json", ".tfprune-run.json"):
        assert (run / name).exists(), name
    # one checkpoint, named by its state with its checksum; no temporary file left
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_0003.keras", "initial.weights.h5", "state.json"]
    state = json.loads((run / "checkpoints/state.json").read_text())
    assert state["epoch"] == 3 and state["checkpoint"] == "epoch_0003.keras"
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) >= {"epoch", "lr", "train_loss", "train_accuracy", "test_loss",
                            "test_accuracy"}
    # LR phases (80, 40, 40) scaled to 3 epochs: 0.1, 0.01, 0.001 (rounded boundaries 2, 2, 3)
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.1, 0.001])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 3
    assert summary["final_test_accuracy"] == pytest.approx(float(rows[-1]["test_accuracy"]))
    assert summary["params"] == result.model.count_params()
    assert "cores" in summary["cpu"] and "code_commit" in summary
    loaded = keras.models.load_model(run / "model.keras")
    assert loaded.optimizer.iterations.numpy() == 3 * 3  # 18 images / batch 6, 3 epochs


def test_interrupted_run_resumes_to_the_same_weights(straight_run, image_folder, tmp_path):
    """Same config and seeded images as the shared run, cut after epoch 2 and resumed."""
    straight = straight_run
    config = tiny_config(image_folder, tmp_path / "broken")
    with pytest.raises(KeyboardInterrupt):
        train(config, extra_callbacks=[StopAfterEpoch(1)])
    state = json.loads((tmp_path / "broken/checkpoints/state.json").read_text())
    assert state["epoch"] == 2 and state["checkpoint"] == "epoch_0002.keras"
    resumed = resume_run(tmp_path / "broken")
    assert resumed.model.optimizer.iterations.numpy() == straight.model.optimizer.iterations.numpy()
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
    rows = json.loads((tmp_path / "broken/metrics.json").read_text())
    assert [row["epoch"] for row in rows] == [1, 2, 3]


def test_existing_run_is_never_overwritten(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path / "run", epochs=1)
    train(config)
    with pytest.raises(ConfigError, match="a run already exists there. Resume it with --resume"):
        train(config)
    with pytest.raises(ConfigError, match="not a run folder"):
        resume_run(tmp_path / "elsewhere")


def test_bad_model_name_and_data_fail_before_training(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path / "a", epochs=1)
    config["model"]["name"] = "resnet7"
    with pytest.raises(ConfigError, match="model.name: Unknown model 'resnet7'"):
        train(config)
    config = tiny_config(tmp_path / "missing", tmp_path / "b", epochs=1)
    with pytest.raises(DataError, match="no such file or folder"):
        train(config)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
