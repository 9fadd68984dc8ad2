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
    # Table 1's published "Loss" is the reference code's SNIP-like sum; Eq. 3 beside it.
    assert measure_label("snip") == "Loss"
    assert measure_label("loss_preservation") == "Loss (Eq. 3)"
    assert dataset_label("cifar100") == "CIFAR-100"
    assert dataset_label("../shared/datasets/cifar10-jpeg.zip") == "CIFAR-10"


def test_tables_average_seeds_bold_the_best_and_subtract_the_base(tmp_path):
    fake_run(tmp_path, "base-s0", 0.80)
    fake_run(tmp_path, "base-s1", 0.82, seed=1)
    fake_run(tmp_path, "mag-s0", 0.70, "magnitude", seed=0)
    fake_run(tmp_path, "mag-s1", 0.74, "magnitude", seed=1)
    fake_run(tmp_path, "lp-s0", 0.75, "loss_preservation")
    fake_run(tmp_path, "prop-s0", 0.60, "proposed")
    fake_run(tmp_path, "grasp1-r5", 0.50, "grasp", {"temperature": 1.0}, rounds=5)
    fake_run(tmp_path / "nested", "snip-s0", 0.65, "snip")  # found below the given folder
    records = collect_runs([tmp_path])
    assert len(records) == 8
    markdown, text = build_report(records)
    table1 = markdown.split("### Table 1")[1].split("### Table 2")[0]
    # Magnitude: mean of 70 and 74 = 72.00, sample std 2.83; Eq. 3's 75.00 is the best: bold.
    assert ("| CIFAR-10 | vgg13 x0.25 (81.00) | 75% | 72.00 ± 2.83 | 65.00 | **75.00** | 60.00 |"
            in table1)
    assert "5 rounds: Mag." in table1 and "| - | - | - | - |" in table1
    table3 = markdown.split("### Table 3")[1]
    assert "| 81.00 | - | - | -9.00 ± 2.83 | -16.00 | **-6.00** | -21.00 |" in table3
    assert "**-31.00**" in table3  # GraSP (T=1) alone in its 5-round group
    assert "1 round: \\|GraSP\\| (T=1) |" in table3  # escaped inside the table
    final_markdown, _ = build_report(records, metric="final")
    assert "71.00 ± 2.83" in final_markdown


def test_csv_has_paired_differences_against_the_base_and_each_measure(tmp_path):
    import csv
    import io

    for seed, (base, mag, snip) in enumerate([(0.80, 0.70, 0.66), (0.82, 0.74, 0.71),
                                              (0.81, 0.72, 0.70)]):
        fake_run(tmp_path, f"base-s{seed}", base, seed=seed)
        fake_run(tmp_path, f"mag-s{seed}", mag, "magnitude", seed=seed)
        fake_run(tmp_path, f"snip-s{seed}", snip, "snip", seed=seed)
    fake_run(tmp_path, "prop-s1", 0.60, "proposed", seed=1)
    _, text = build_report(collect_runs([tmp_path]))
    rows = {row["measure"]: row for row in csv.DictReader(io.StringIO(text))}
    mag = rows["Mag."]
    # Mag. - Loss per seed: 4, 3, 2 points: mean 3, std 1, t(0.975, 2) 4.3027 / sqrt(3).
    assert float(mag["diff_vs_Loss"]) == pytest.approx(3.0)
    assert float(mag["ci_low_vs_Loss"]) == pytest.approx(3 - 4.302653 / 3 ** 0.5, abs=1e-3)
    assert mag["seeds_vs_Loss"] == "3" and mag["diff_vs_Mag."] == ""
    assert float(mag["diff_vs_base"]) == pytest.approx(-9.0)  # -10, -8, -9
    assert float(rows["Proposed"]["diff_vs_Mag."]) == pytest.approx(-14.0)
    assert rows["Proposed"]["seeds_vs_Mag."] == "1" and rows["Proposed"]["ci_low_vs_Mag."] == ""
    assert mag["metric"] == "best" and mag["seeds"] == "3"


def test_write_report_writes_every_metric_and_refuses_duplicate_cells(tmp_path):
    from tfprune.study.report import write_report

    fake_run(tmp_path / "runs", "mag-s0", 0.70, "magnitude", final=0.65)
    markdown, csv_path, claims = write_report([tmp_path / "runs"], tmp_path / "out")
    text = markdown.read_text()
    assert "(best_after_pruning)" in text and "(final)" in text and "(best)" in text
    lines = csv_path.read_text().splitlines()
    # no per-epoch log and best != final: the selection after the last round is unknown
    assert [line.split(",")[0] for line in lines[1:]] == ["final", "best"]
    assert claims.read_text().startswith("| source |")
    fake_run(tmp_path / "runs", "mag-again-s0", 0.60, "magnitude")
    with pytest.raises(ValueError, match="same cell and seed 0"):
        write_report([tmp_path / "runs"], tmp_path / "out")


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        collect_runs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="metric must be"):
        build_report([], metric="median")


def test_runs_become_hparams_trials_tensorboard_can_read(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from tfprune.study.report import write_report

    fake_run(tmp_path / "runs", "base-s0", 0.80)
    fake_run(tmp_path / "runs", "mag-s0", 0.70, "magnitude")
    write_report([tmp_path / "runs"], tmp_path / "out")
    root = EventAccumulator(str(tmp_path / "out" / "hparams"))
    root.Reload()
    assert metadata.EXPERIMENT_TAG in root.summary_metadata
    trial = EventAccumulator(str(tmp_path / "out" / "hparams" / "mag-s0"),
                             size_guidance={"tensors": 0})
    trial.Reload()
    assert metadata.SESSION_START_INFO_TAG in trial.summary_metadata
    content = trial.summary_metadata[metadata.SESSION_START_INFO_TAG].plugin_data.content
    start = metadata.parse_session_start_info_plugin_data(content)
    assert start.hparams["measure"].string_value == "Mag."
    assert start.hparams["seed"].number_value == 0
    (event,) = trial.Tensors("hparams/best_test_accuracy")
    import tensorflow as tf

    assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(0.70)


def test_report_never_overwrites_a_users_file(tmp_path, capsys):
    from tfprune.cli.main import main

    fake_run(tmp_path / "runs", "mag-s0", 0.70, "magnitude")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my report")
    assert main(["report", str(tmp_path / "runs"), "--output", str(mine)]) == 2
    assert "report.md already exist(s)" in capsys.readouterr().err
    assert (mine / "report.md").read_text() == "my report"
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"]
    # its own files it replaces; --force replaces the user's
    assert main(["report", str(tmp_path / "runs"), "--output", str(tmp_path / "out")]) == 0
    assert main(["report", str(tmp_path / "runs"), "--output", str(tmp_path / "out")]) == 0
    assert main(["report", str(tmp_path / "runs"), "--output", str(mine), "--force"]) == 0
    assert (mine / "report.md").read_text() != "my report"
