"""``tfprune tune`` in keras-tuner's distributed mode: a chief (the oracle) and 2 workers."""

import json
import os
import socket
import subprocess
import sys

import pytest
from cli.test_cli import tiny_config
from study.test_tuning import TUNE

from tfprune.config import ConfigError
from tfprune.study.tuning import tuner_role


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: Put on the chief's PYTHONPATH: keras-tuner's chief, told to stop while a worker still runs
#: a trial, polls every 20 s (``oracle_chief.start_server``); here every 0.2 s, which changes
#: nothing but the wait (about 18 s of this test's time).
FAST_CHIEF = """
import time

import keras_tuner.src.distribute.oracle_chief as oracle_chief


class _PollingFaster:
    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        time.sleep(min(seconds, 0.2))


oracle_chief.time = _PollingFaster()
"""


def test_chief_and_two_workers_all_exit_0_and_one_tuning_json_lists_every_trial(
        image_folder, tmp_path):
    config = tmp_path / "c.yaml"
    (tmp_path / "chief_path").mkdir()
    (tmp_path / "chief_path" / "sitecustomize.py").write_text(FAST_CHIEF)
    chief_path = os.pathsep.join(filter(None, [str(tmp_path / "chief_path"),
                                               os.environ.get("PYTHONPATH")]))
    # Two trials of one measure (targets 0.3 and 0.6), one per worker.
    config.write_text(tiny_config(image_folder, epochs=1) +
                      (TUNE % 10**6).replace("measures: [magnitude, grasp]",
                                             "measures: [magnitude]"))
    run = tmp_path / "run"
    environment = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                   "KERASTUNER_ORACLE_PORT": str(free_port()), "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "tfprune", "tune", str(config), "--set", f"run.dir={run}"]
    processes = {tuner_id: subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True,
                                            env={**environment, "KERASTUNER_TUNER_ID": tuner_id,
                                                 **({"PYTHONPATH": chief_path}
                                                    if tuner_id == "chief" else {})})
                 for tuner_id in ("chief", "tuner0", "tuner1")}
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=600)[0]
    finally:
        for process in processes.values():
            process.kill()
    assert {tuner_id: p.returncode for tuner_id, p in processes.items()} == \
        {"chief": 0, "tuner0": 0, "tuner1": 0}, outputs
    for worker in ("tuner0", "tuner1"):
        assert "the oracle has stopped; the chief writes tuning.json" in outputs[worker]
    assert "best: {" in outputs["chief"]
    result = json.loads((run / "tuning.json").read_text())
    assert result["role"] == "chief"
    assert sorted(trial["trial"] for trial in result["trials"]) == ["0", "1"]
    for trial in result["trials"]:  # each trial's score is its run's own result
        summary = json.loads((tmp_path / trial["run_dir"] / "summary.json").read_text())
        assert summary["best_test_accuracy"] == pytest.approx(trial["metrics"]["score"])
    assert sorted(p.name for p in (run / "hparams").iterdir() if p.is_dir()) == \
        ["trial_0", "trial_1"]
    assert list(run.glob("*.tmp-*")) == []


def test_roles_come_from_keras_tuners_variables(monkeypatch):
    monkeypatch.delenv("KERASTUNER_ORACLE_IP", raising=False)
    assert tuner_role() == "single"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert tuner_role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner3")
    assert tuner_role() == "worker"
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT is not"):
        tuner_role()
