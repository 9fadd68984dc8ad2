import csv
import json

import numpy as np
import pytest
from interrupt import StopAfterEpoch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tfprune.config import ConfigError, load_config
from tfprune.pruning import PruningPlan
from tfprune.training import resume_run, train
from tfprune.workflows.prune_run import PruneExtension, prune, resume_prune


def prune_config(image_folder, run_dir, **prune):
    settings = {"measure": "magnitude", "target": 0.5, "rounds": 2, **prune}
    return load_config(None, [
        "model.name=vgg11", "model.width_multiplier=0.0625", f"data.source={image_folder}",
        "data.batch_size=9", "train.epochs=3", "train.verbose=0", f"run.dir={run_dir}",
        *(f"prune.{key}={json.dumps(value)}" for key, value in settings.items()),
    ])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One finished snip run in two rounds (snip: a gradient measure, so gradient norms too)."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("prune_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TFPRUNE_CACHE_DIR", str(root / "cache"))
        return prune(prune_config(write_image_folder(root / "images"), root / "run",
                                  measure="snip", num_samples=12)).run_dir


def test_prune_run_folder_counts_and_tensorboard(finished_run):
    run = finished_run
    total = 4 + 8 + 16 + 16 + 32 + 32 + 32 + 32  # vgg11 at width 1/16: every conv
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["kept_filters"]) for row in rows] == [
        total - round(0.25 * total), total - round(0.5 * total), total - round(0.5 * total)]
    assert {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"} <= set(rows[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fraction_removed"] == pytest.approx(round(0.5 * total) / total)
    assert summary["params_after"] < summary["params_before"]
    assert summary["flops_after"] < summary["flops_before"]
    assert sum(kept for kept, _ in summary["filters_kept"].values()) == total - round(0.5 * total)
    assert summary["measure"]["name"] == "snip" and summary["rounds_done"] == 2
    for name, (kept, original) in summary["filters_kept"].items():
        assert summary["layers"][name]["filters"] == [kept, original]
    rows = summary["layers"].values()
    assert sum(row["params"][0] for row in rows) < sum(row["params"][1] for row in rows)
    assert sum(row["flops"][0] for row in summary["layers"].values()) == summary["flops_after"]
    plans = sorted(p.name for p in (run / "plans").glob("*.npz"))
    assert plans == ["epoch_001.npz", "epoch_002.npz"]
    events = EventAccumulator(str(run / "tensorboard" / "pruning"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    assert {"scores/block1_unit1_conv", "kept_ratio/block1_unit1_conv", "pruning/kept_fraction",
            "pruning/kept_total", "pruning/masks", "pruning/scores", "pruning/summary",
            "gradient_norm/block1_unit1_conv"} <= tags
    steps = [event.step for event in events.Tensors("pruning/kept_total")]
    assert steps == [1, 2]
    for split in ("train", "validation"):  # per-epoch accuracy and loss, from Keras' callback
        curves = EventAccumulator(str(run / "tensorboard" / split), size_guidance={"tensors": 0})
        curves.Reload()
        assert {"epoch_accuracy", "epoch_loss"} <= set(curves.Tags()["tensors"])


def test_resumed_prune_run_matches_an_uninterrupted_one(finished_run, image_folder, tmp_path):
    """Cut after epoch 1 and resumed, it ends as the module's run, which had the same config
    and the same images (``write_image_folder`` is seeded) and was never interrupted."""
    from tfprune.run_folder import RunFolder

    whole_dir, whole_model = finished_run, RunFolder(finished_run).load_model(compile=False)
    config = prune_config(image_folder, tmp_path / "cut", measure="snip", num_samples=12)
    with pytest.raises(KeyboardInterrupt):
        train(config, extension=PruneExtension(config), extra_callbacks=[StopAfterEpoch(1)])
    with pytest.raises(ConfigError, match="is a prune run; resume it with tfprune prune"):
        resume_run(tmp_path / "cut")
    resumed = resume_prune(tmp_path / "cut")
    for name in ("epoch_001", "epoch_002"):
        a = PruningPlan.load(whole_dir / "plans" / name)
        b = PruningPlan.load(resumed.run_dir / "plans" / name)
        assert all(np.array_equal(a.keep[k], b.keep[k]) for k in a.keep)
    for a, b in zip(whole_model.weights, resumed.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_resuming_a_finished_run_changes_nothing(finished_run):
    from tfprune.cli.main import main

    run = finished_run
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    with pytest.raises(ConfigError, match="already finished; there is nothing to resume"):
        resume_prune(run)
    assert main(["prune", "--resume", str(run)]) == 2
    after = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    assert after == before  # summary.json byte-identical, nothing added


@pytest.mark.parametrize("prune_settings, message", [
    ({"rounds": 5}, "prune.rounds: pruning may run until epoch 5 but train.epochs is 3"),
    ({"target": 1.0}, "prune.target: invalid value 1.0"),
    ({"target": -0.1}, "prune.target: invalid value -0.1"),
    ({"rounds": 0}, "prune.rounds: invalid value 0"),
    ({"measure": "magnitud"}, "unknown importance measure 'magnitud'"),
    ({"ignored_layers": ["nope"]}, "no layer or op named ['nope']"),
    ({"measure": "bn_scale", "granularity": "weight"}, "supports ['filter']"),
])
def test_bad_prune_configs_fail_before_training(image_folder, tmp_path, prune_settings, message):
    with pytest.raises(ConfigError) as error:
        prune(prune_config(image_folder, tmp_path / "run", **prune_settings))
    assert message in str(error.value)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_model_too_narrow_for_the_target_is_refused_before_training(image_folder, tmp_path):
    config = prune_config(image_folder, tmp_path / "run", measure="magnitude", target=0.9)
    config["model"]["width_multiplier"] = 0.005  # one or two filters per layer
    with pytest.raises(ConfigError, match=r"prune.target 0.9: this model cannot be pruned that "
                                          r"far \(cannot remove 14 of 16: the floors "
                                          r"\(min_keep\) leave only 8 removable.\); lower "
                                          r"prune.target"):
        prune(config)
    assert not (tmp_path / "run").exists()  # nothing written, no epoch trained
