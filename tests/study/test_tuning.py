"""keras-tuner search over the pruning recipe on tiny data."""

import json

import keras_tuner
import pytest
from cli.test_cli import tiny_config

from tfprune.cli.main import main
from tfprune.config import ConfigError, load_config
from tfprune.study.tuning import PruningHyperModel

TUNE = ("prune: {samples_per_class: 2, num_samples: 12}\n"
        "tune: {measures: [magnitude, grasp], rounds: [1], target_min: 0.3, target_max: 0.6, "
        "target_step: 0.3, grasp_temperatures: [1.0, 200.0], max_trials: 2, "
        "max_params: %d}\n")


def test_space_and_trial_config(image_folder, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config(image_folder, epochs=1) + TUNE % 10**6)
    hypermodel = PruningHyperModel(load_config(path), tmp_path / "run")
    hp = keras_tuner.HyperParameters()
    values = hypermodel.declare(hp)
    assert values == {"measure": "magnitude", "rounds": 1, "target": 0.3}
    assert hp.values["measure"] == "magnitude" and "grasp_temperature" not in hp.values
    hp.values.update(measure="grasp", grasp_temperature=1.0)  # as the oracle would set them
    chosen = hypermodel.declare(hp)
    assert chosen["grasp_temperature"] == 1.0
    config = hypermodel.trial_config(chosen, "07")
    assert config["prune"]["measure_options"] == {"temperature": 1.0}
    assert config["run"]["dir"] == str(tmp_path / "run/trials/trial_07")
    assert hypermodel.metrics({"best_test_accuracy": 0.5, "params_after": 10**7,
                               "flops_after": 1})["score"] == 0.0  # over the budget


def test_bad_spaces_fail_before_searching(image_folder, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(tiny_config(image_folder, epochs=1) + "tune: {measures: [nope], rounds: [1]}\n")
    with pytest.raises(ConfigError, match=r"tune.measures: unknown \['nope'\]"):
        PruningHyperModel(load_config(path), tmp_path)
    path.write_text(tiny_config(image_folder, epochs=1) + "tune: {rounds: [3]}\n")
    with pytest.raises(ConfigError, match="tune.rounds: 3 rounds need as many epochs"):
        PruningHyperModel(load_config(path), tmp_path)
    path.write_text(tiny_config(image_folder, epochs=1))
    assert main(["tune", str(path), "--set", "run.strategy=multi_worker", "--set",
                 f"run.dir={tmp_path / 'tuned'}"]) == 2
    assert not (tmp_path / "tuned").exists()


def test_tune_runs_trials_as_run_folders_and_continues(image_folder, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    run = tmp_path / "run"
    path.write_text(tiny_config(image_folder, epochs=1) + TUNE % 10**6)
    assert main(["tune", str(path), "--set", f"run.dir={run}"]) == 0
    out = capsys.readouterr().out
    assert out.count("trial ") == 2 and "best: {" in out
    result = json.loads((run / "tuning.json").read_text())
    assert len(result["trials"]) == 2
    for trial in result["trials"]:
        summary = json.loads((tmp_path / trial["run_dir"] / "summary.json").read_text())
        assert summary["best_test_accuracy"] == pytest.approx(trial["metrics"]["score"])
        assert summary["fraction_removed"] == pytest.approx(trial["hyperparameters"]["target"],
                                                            abs=0.01)
    trial_logs = sorted(p.name for p in (run / "hparams").iterdir() if p.is_dir())
    assert trial_logs == sorted(f"trial_{t['trial']}" for t in result["trials"])  # HParams
    # The same command again: the search is complete, nothing is retrained.
    stamps = {p: p.stat().st_mtime for p in run.glob("trials/*/summary.json")}
    assert main(["tune", str(path), "--set", f"run.dir={run}"]) == 0
    assert {p: p.stat().st_mtime for p in run.glob("trials/*/summary.json")} == stamps
