"""``tfprune grid``: configs x seeds into run folders; finished runs skipped, broken resumed."""

import json
import subprocess
import sys

import pytest
from cli.test_cli import tiny_config
from interrupt import StopAfterEpoch

from tfprune.cli.main import main
from tfprune.config import ConfigError
from tfprune.study.grid import grid_items, run_grid
from tfprune.training import train


def write_configs(tmp_path, image_folder):
    base = tmp_path / "base.yaml"
    base.write_text(tiny_config(image_folder, epochs=2) + "run: {name: base}\n")
    pruned = tmp_path / "pruned.yaml"
    pruned.write_text(tiny_config(image_folder, epochs=2, prune="{measure: magnitude, "
                                  "target: 0.5}") + "run: {name: mag}\n")
    return base, pruned


def test_grid_runs_skips_and_resumes_then_reports(image_folder, tmp_path, capsys):
    base, pruned = write_configs(tmp_path, image_folder)
    runs = tmp_path / "runs"
    two_seeds = grid_items([base, pruned], seeds=2, runs_dir=runs)
    assert [item.run_dir.name for item in two_seeds] == ["base-s0", "base-s1", "mag-s0",
                                                         "mag-s1"]
    assert [item.prune for item in two_seeds] == [False, False, True, True]
    assert two_seeds[1].config["train"]["seed"] == 1
    items = grid_items([base, pruned], seeds=1, runs_dir=runs)
    with pytest.raises(KeyboardInterrupt):  # as Ctrl-C would leave it
        train(items[0].config, extra_callbacks=[StopAfterEpoch(0)])
    assert items[0].state == "resume" and items[1].state == "new"

    assert main(["grid", str(base), str(pruned), "--runs-dir", str(runs), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert f"resume  {runs / 'base-s0'}" in listing and f"   new  {runs / 'mag-s0'}" in listing
    assert main(["grid", str(base), str(pruned), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "[1/2] base-s0: resuming" in out and "[2/2] mag-s0: starting" in out
    metrics = json.loads((runs / "base-s0/metrics.json").read_text())
    assert [row["epoch"] for row in metrics] == [1, 2]  # resumed from epoch 1
    assert json.loads((runs / "mag-s0/summary.json").read_text())["fraction_removed"] == 0.5

    assert run_grid(items, progress=None) == {"done": [i.run_dir for i in items], "ran": [],
                                              "failed": [], "elsewhere": []}
    hparams = runs / "hparams"
    events = sorted(str(p.parent.relative_to(hparams)) for p in hparams.rglob("events.out.*"))
    assert events == [".", "base-s0", "mag-s0"]
    assert main(["grid", str(base), str(pruned), "--runs-dir", str(runs)]) == 0  # all skipped
    assert len(list(hparams.rglob("events.out.*"))) == 3  # rewritten whole, not appended
    assert main(["report", str(runs), "--output", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report/report.md").read_text()
    assert "vgg11 x0.0625 (" in report and "1 round: Mag." in report
    assert "mag-s0" in report and (tmp_path / "report/report.csv").is_file()
    assert "| source | claim |" in (tmp_path / "report/claims.md").read_text()


def test_grid_checks_every_config_before_running(image_folder, tmp_path):
    base, _ = write_configs(tmp_path, image_folder)
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_config(image_folder, epochs=2, prune="{measure: nope}"))
    with pytest.raises(ConfigError, match="bad.yaml: prune.measure: .*nope"):
        grid_items([base, bad], runs_dir=tmp_path / "runs")
    with pytest.raises(ConfigError, match="no such config file"):
        grid_items([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="both write"):
        grid_items([base, base], runs_dir=tmp_path / "runs")
    with pytest.raises(ConfigError, match="base.yaml: run.strategy: multi_worker: the workers "
                                          "of one cluster must train the same run in step"):
        grid_items([base], runs_dir=tmp_path / "runs", overrides=["run.strategy=multi_worker"])
    assert not (tmp_path / "runs").exists()


def test_a_run_folder_of_another_config_is_refused_naming_the_keys(image_folder, tmp_path):
    base, _ = write_configs(tmp_path, image_folder)
    runs = tmp_path / "runs"
    (item,) = grid_items([base], runs_dir=runs, overrides=["train.epochs=1"])
    train(item.config)
    assert grid_items([base], runs_dir=runs, overrides=["train.epochs=1",
                                                        "train.verbose=2"])  # same run
    with pytest.raises(ConfigError, match=r"base-s0: this run was started with another config "
                                          r"than .*base.yaml asks for \(train.epochs: 1 in the "
                                          r"run, 2 requested\); the grid neither resumes nor "
                                          r"skips it"):
        grid_items([base], runs_dir=runs)


def test_two_grid_processes_share_one_grid_and_train_each_run_once(image_folder, tmp_path):
    config = tmp_path / "mag.yaml"
    config.write_text(tiny_config(image_folder, epochs=1, prune="{measure: magnitude, "
                                  "target: 0.5}") + "run: {name: mag}\n")
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "tfprune", "grid", str(config), "--seeds", "3",
               "--runs-dir", str(runs)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    started = [line for out in outputs for line in out.splitlines() if ": starting" in line]
    assert sorted(line.split("] ")[1].split(":")[0] for line in started) == \
        ["mag-s0", "mag-s1", "mag-s2"], outputs  # each run trained by exactly one process
    for seed in range(3):
        run = runs / f"mag-s{seed}"
        assert [row["epoch"] for row in json.loads((run / "metrics.json").read_text())] == [1]
        assert not (run / ".tfprune-claim.json").exists()
    assert not list(runs.rglob("*.tmp-*"))


def test_shards_split_the_grid(image_folder, tmp_path, capsys):
    base, pruned = write_configs(tmp_path, image_folder)
    listings = []
    for shard in ("0/2", "1/2"):
        assert main(["grid", str(base), str(pruned), "--seeds", "2", "--runs-dir",
                     str(tmp_path / "runs"), "--shard", shard, "--dry-run"]) == 0
        listings.append(capsys.readouterr().out)
    assert "shard 0/2: 2 run(s)" in listings[0]
    assert all(name in listings[0] for name in ("base-s0", "mag-s0"))
    assert all(name in listings[1] for name in ("base-s1", "mag-s1"))
    assert "base-s1" not in listings[0] and "base-s0" not in listings[1]
    assert main(["grid", str(base), "--shard", "2/2", "--dry-run"]) == 2
    assert "--shard 2/2: I must be in 0..N-1" in capsys.readouterr().err
