"""The per-run list of a report: order, values read from the run folders, CSV and Markdown."""

import csv
import io
import json

import yaml

from tfprune.study.report import collect_runs, write_report
from tfprune.study.run_list import COLUMNS, run_rows, runs_csv, runs_markdown


def run_folder(root, name, seed, measure=None, epochs=(), **summary):
    """A finished run folder; ``epochs`` are the per-epoch seconds of its metrics.csv."""
    folder = root / name
    folder.mkdir(parents=True)
    config = {"model": {"name": "vgg13", "width_multiplier": 0.25},
              "data": {"source": "cifar10"}, "train": {"seed": seed}}
    summary = {"best_test_accuracy": 0.8, "final_test_accuracy": 0.79, **summary}
    if measure:
        config["prune"] = {"measure": measure, "target": 0.75}
        summary.update(measure={"name": measure}, rounds_done=5)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps(summary))
    if epochs:
        lines = ["epoch,train_accuracy,seconds"] + [
            f"{epoch},0.5,{seconds}" for epoch, seconds in enumerate(epochs, 1)]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_rows_are_ordered_by_seed_then_base_then_the_tables_columns(tmp_path):
    run_folder(tmp_path, "z-prop-s0", 0, "proposed")
    run_folder(tmp_path, "a-mag-s1", 1, "magnitude")
    run_folder(tmp_path, "b-mag-s0", 0, "magnitude")
    run_folder(tmp_path, "y-base-s0", 0)
    run_folder(tmp_path, "x-random-s0", 0, "random")
    rows = run_rows(collect_runs([tmp_path]))
    assert [(row["seed"], row["measure"]) for row in rows] == [
        (0, "base"), (0, "Random"), (0, "Mag."), (0, "Proposed"), (1, "Mag.")]


def test_values_come_from_the_summary_and_the_epochs_seconds(tmp_path):
    # A resumed run: 3 epochs over two sessions; its training time is their sum, not the
    # last session's seconds.
    run_folder(tmp_path, "mag-s2", 2, "magnitude", epochs=(40.5, 41.0, 39.5),
               best_test_accuracy=0.7797, final_test_accuracy=0.7767, best_epoch=2,
               params=592186, params_after=35979, flops_after=11388812,
               seconds_this_session=39.5)
    run_folder(tmp_path, "base-s2", 2, params=592186)
    base, mag = run_rows(collect_runs([tmp_path]))
    assert mag["train_seconds"] == 121.0 and mag["best_epoch"] == 2
    assert mag["params"] == 35979 and mag["flops"] == 11388812
    assert abs(mag["best_accuracy"] - 77.97) < 1e-9 and abs(mag["final_accuracy"] - 77.67) < 1e-9
    assert base["params"] == 592186  # a base run's size is its "params"
    assert base["flops"] is None and base["train_seconds"] is None and base["best_epoch"] is None

    table = runs_markdown(collect_runs([tmp_path]))
    assert "| mag-s2 | Mag. | 5 | 2 | 77.67 | 77.97 | 2 | 35,979 | 11.39M | 121 |" in table
    assert "| base-s2 | base | 0 | 2 | 79.00 | 80.00 | - | 592,186 | - | - |" in table
    rows = list(csv.DictReader(io.StringIO(runs_csv(collect_runs([tmp_path])))))
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["flops"] == "" and rows[1]["train_seconds"] == "121.0000"


def test_write_report_adds_the_runs_to_report_md_and_runs_csv(tmp_path):
    run_folder(tmp_path / "runs", "grasp-abs-s0", 0, "grasp_abs", epochs=(10,))
    markdown, _, _ = write_report([tmp_path / "runs"], tmp_path / "out")
    runs = markdown.read_text().split("## Runs")[1]
    assert "| grasp-abs-s0 | \\|GraSP\\| (T=1) | 5 | 0 |" in runs  # bars escaped
    assert (tmp_path / "out" / "runs.csv").read_text().startswith(",".join(COLUMNS))
