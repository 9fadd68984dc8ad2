"""Tables 1-3 from hand-made run folders: means, stds, bold, base values and deltas."""

import json

import pytest
import yaml

from tfprune.study.report import build_report, collect_runs, dataset_label, measure_label


def fake_run(root, name, best, measure=None, options=None, rounds=1, seed=0, final=None,
             source="../shared/datasets/cifar10-jpeg.zip"):
    folder = root / name
    folder.mkdir(parents=True)
    config = {"model": {"name": "vgg13", "width_multiplier": 0.25},
              "data": {"source": source}, "train": {"seed": seed}}
    summary = {"best_test_accuracy": best, "final_test_accuracy": final or best - 0.01}
    if measure:
        config["prune"] = {"measure": measure, "measure_options": options or {}, "target": 0.75}
        summary.update(measure={"name": measure}, rounds_done=rounds)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_labels_follow_the_paper():
    assert measure_label("grasp") == "GraSP (T=200)"
    assert measure_label("grasp", {"temperature": 1.0}) == "GraSP (T=1)"
    assert measure_label("grasp_abs") == "|GraSP| (T=1)"
    assert measure_label("loss_preservation") == "Loss" and measure_label("snip") == "snip"
    assert dataset_label("cifar100") == "CIFAR-100"
    assert dataset_label("../shared/datasets/cifar10-jpeg.zip") == "CIFAR-10"


def test_tables_average_seeds_bold_the_best_and_subtract_the_base(tmp_path):
    fake_run(tmp_path, "base-s0", 0.80)
    fake_run(tmp_path, "base-s1", 0.82)
    fake_run(tmp_path, "mag-s0", 0.70, "magnitude", seed=0)
    fake_run(tmp_path, "mag-s1", 0.74, "magnitude", seed=1)
    fake_run(tmp_path, "loss-s0", 0.75, "loss_preservation")
    fake_run(tmp_path, "prop-s0", 0.60, "proposed")
    fake_run(tmp_path, "grasp1-r5", 0.50, "grasp", {"temperature": 1.0}, rounds=5)
    fake_run(tmp_path / "nested", "snip-s0", 0.65, "snip")  # found below the given folder
    records = collect_runs([tmp_path])
    assert len(records) == 8
    markdown, text = build_report(records)
    table1 = markdown.split("### Table 1")[1].split("### Table 2")[0]
    # Magnitude: mean of 70 and 74 = 72.00, sample std 2.83; Loss 75.00 is the best: bold.
    assert "| CIFAR-10 | vgg13 x0.25 (81.00) | 75% | 72.00 ± 2.83 | **75.00** | 60.00 |" in table1
    assert "5 rounds: Mag." in table1 and "| - | - | - |" in table1
    table3 = markdown.split("### Table 3")[1]
    assert "| 81.00 | - | - | -9.00 ± 2.83 | **-6.00** | -21.00 |" in table3
    assert "**-31.00**" in table3  # GraSP (T=1) alone in its 5-round group
    assert "1 round: \\|GraSP\\| (T=1) |" in table3  # escaped inside the table
    assert "CIFAR-10,vgg13 x0.25,0.75,1,snip,65.0000,0.0000,1,81.0000" in text
    final_markdown, _ = build_report(records, metric="final")
    assert "71.00 ± 2.83" in final_markdown


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        collect_runs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="metric must be"):
        build_report([], metric="median")
