"""``RunFolder``: one layout, the run's state, and clear errors for unreadable files."""

import json

import pytest
import yaml

from tfprune.cli.main import main
from tfprune.config import load_config, save_config
from tfprune.run_folder import RunFolder, RunFolderError
from tfprune.training import read_run_config, train


def make_run(path, *, epochs_done=0, summary=None):
    config = load_config(None, [f"run.dir={path}"])
    run = RunFolder(path)
    run.checkpoints.mkdir(parents=True)
    save_config(config, run.config)
    if epochs_done:
        run.checkpoint_state.write_text(json.dumps({"epoch": epochs_done}))
    if summary is not None:
        run.summary.write_text(summary)
    return run


def test_states_follow_the_files(tmp_path):
    run = RunFolder(tmp_path / "run")
    assert run.state == "new" and not run.is_run
    make_run(run.path, epochs_done=2)
    assert run.state == "interrupted" and run.finished_epochs() == 2 and run.is_run
    run.summary.write_text(json.dumps({"best_test_accuracy": 0.5}))
    assert run.state == "finished" and run.read_summary() == {"best_test_accuracy": 0.5}
    assert run.model.name == "model.keras" and run.plans.parent == run.path


def test_a_truncated_checkpoint_state_is_named_with_what_to_do(tmp_path):
    run = make_run(tmp_path / "run", epochs_done=1)
    run.checkpoint_state.write_text('{"epo')
    with pytest.raises(RunFolderError, match=r"state.json: the checkpoint state is corrupted.*"
                                             r"delete the run's checkpoints/ folder"):
        train(read_run_config(run.path), resume=True)


def test_a_corrupted_checkpoint_fails_before_any_data_is_loaded(tmp_path):
    run = make_run(tmp_path / "run", epochs_done=1)
    run.last_checkpoint.write_bytes(b"not a keras file")
    config = read_run_config(run.path)
    config["data"]["source"] = str(tmp_path / "nowhere")  # would fail if data were loaded first
    with pytest.raises(RunFolderError, match=r"last.keras: the last checkpoint cannot be loaded"):
        train(config, resume=True)


def test_report_names_a_corrupted_summary_in_one_line(tmp_path, capsys):
    make_run(tmp_path / "runs" / "a", summary='{"best_test_accuracy": 0.5, "fin')
    assert main(["report", str(tmp_path / "runs"), "--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "a/summary.json: the summary is corrupted or truncated" in error
    assert "rerun it into a new folder" in error


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    run = make_run(tmp_path / "run", epochs_done=3, summary='{"best_test_accuracy": 0.5}')
    before = {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()}
    assert main(["train", "--resume", str(run.path)]) == 2
    assert {path: path.read_bytes() for path in run.path.rglob("*") if path.is_file()} == before
    assert yaml.safe_load(run.config.read_text())["run"]["dir"] == str(run.path)
