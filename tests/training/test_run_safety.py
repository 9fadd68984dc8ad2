"""Run folders are never lost: ownership, one process per run, checkpoint and state as one unit."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from test_trainer import tiny_config

from tfprune.config import ConfigError
from tfprune.run_folder import RunFolder, RunFolderError
from tfprune.training import resume_run, train


def test_a_foreign_folder_is_refused_and_left_as_it_was(image_folder, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"config.yaml": "my: notes\n", "metrics.csv": "a,b\n1,2\n", "model.keras": "x"}
    for name, text in files.items():
        (mine / name).write_text(text)
    with pytest.raises(RunFolderError, match=r"mine: not a tfprune run folder and not empty "
                                             r"\(config.yaml, metrics.csv, model.keras\)"):
        train(tiny_config(image_folder, mine, epochs=1))
    assert {p.name: p.read_text() for p in mine.iterdir()} == files
    # an empty folder is fine, and gets the ownership marker first
    empty = tmp_path / "empty"
    empty.mkdir()
    train(tiny_config(image_folder, empty, epochs=1))
    marker = json.loads((empty / ".tfprune-run.json").read_text())
    assert marker["pid"] == os.getpid() and "cores" in marker["cpu"]


def test_a_second_process_is_refused_while_the_first_holds_the_run(tmp_path):
    run = RunFolder(tmp_path / "run")
    script = textwrap.dedent(f"""
        import sys, time
        from tfprune.run_folder import RunFolder
        with RunFolder({str(run.path)!r}).lock("train"):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"run: in use by process {holder.pid} on "
                                                 r".+ \(train, since .+\); one process at a "
                                                 r"time per run folder"):
            with run.lock("resume"):
                pass
    finally:
        holder.communicate("\n", timeout=60)
    with run.lock("train"), run.lock("nested"):  # free again, and re-entrant in one process
        pass


def test_two_prune_commands_on_one_folder_exactly_one_runs(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path / "run", epochs=1)
    config["prune"] = {"measure": "magnitude", "target": 0.5, "rounds": 1}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(
        {key: config[key] for key in ("model", "data", "train", "run", "prune")}))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "tfprune.cli.main", "prune", str(tmp_path / "a.yaml")]
    first = subprocess.Popen(command + ["--set", "train.seed=0"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    second = subprocess.Popen(command + ["--set", "train.seed=1"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    outcomes = [process.communicate(timeout=300) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    assert codes[0] == 0 and codes[1] != 0, outcomes
    refused = next(err for (out, err), p in zip(outcomes, (first, second), strict=True)
                   if p.returncode)
    assert ("in use by process" in refused or "a run already exists there" in refused), refused
    assert "Traceback" not in refused
    run = RunFolder(tmp_path / "run")
    seed = yaml.safe_load(run.config.read_text())["train"]["seed"]
    assert run.state == "finished" and len(run.read_metrics()) == 1
    winner = first if first.returncode == 0 else second
    assert seed == (0 if winner is first else 1)  # config and metrics of the same process


def _kill_between_checkpoint_and_state(image_folder, run_dir):
    """Trains in a subprocess killed (os._exit) after epoch 2's checkpoint, before its state."""
    config = tiny_config(image_folder, run_dir)
    script = textwrap.dedent(f"""
        import os
        from tfprune.run_folder import RunFolder
        from tfprune.training import train
        commit = RunFolder.commit_checkpoint
        def dying_commit(self, epoch, path):
            if epoch == 2:
                os._exit(9)
            commit(self, epoch, path)
        RunFolder.commit_checkpoint = dying_commit
        train({config!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 9, result.stderr


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """(image folder, a run killed between epoch 2's checkpoint and its state), made once."""
    from conftest import write_image_folder

    root = tmp_path_factory.mktemp("killed")
    image_folder = write_image_folder(root / "images")
    _kill_between_checkpoint_and_state(image_folder, root / "run")
    return image_folder, root / "run"


def _copy_of(killed_run, destination):
    import shutil

    shutil.copytree(killed_run[1], destination)
    return RunFolder(destination)


def test_a_kill_between_checkpoint_and_state_resumes_bit_identical(killed_run, tmp_path):
    straight = train(tiny_config(killed_run[0], tmp_path / "straight"))
    run = _copy_of(killed_run, tmp_path / "killed")
    # epoch 2's checkpoint is on disk, but the state still names epoch 1's
    assert run.finished_epochs() == 1 and run.last_checkpoint.name == "epoch_0001.keras"
    assert (run.checkpoints / "epoch_0002.keras").is_file()
    resumed = resume_run(run.path)
    for a, b in zip(straight.model.weights, resumed.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert [row["epoch"] for row in run.read_metrics()] == [1, 2, 3]
    assert sorted(p.name for p in run.checkpoints.glob("epoch_*")) == ["epoch_0003.keras"]


def test_a_checkpoint_that_does_not_match_its_state_is_refused(killed_run, tmp_path):
    run = _copy_of(killed_run, tmp_path / "run")
    # a checkpoint swapped under its state (copied from elsewhere, or a half-restored backup)
    (run.checkpoints / "epoch_0002.keras").replace(run.last_checkpoint)
    with pytest.raises(ConfigError, match=r"epoch_0001.keras: does not match its checkpoint "
                                          r"state \(SHA-256 differs\)"):
        resume_run(run.path)
