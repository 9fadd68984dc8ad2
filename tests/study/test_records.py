"""Records files: a study's finished runs kept as their RunRecords, not as run folders."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import pytest
from test_run_list import run_folder

from tfprune.cli.main import main
from tfprune.study.records import load_records, save_records
from tfprune.study.report import collect_runs, write_report


def test_records_round_trip_and_give_the_tables_the_folders_give(tmp_path):
    runs = tmp_path / "runs"
    run_folder(runs, "base-s0", 0, epochs=(10, 12))
    run_folder(runs, "snip-s0", 0, measure="snip", best_test_accuracy=0.7,
               filters_kept={"a": [3, 8], "b": [4, 8]})
    from_folders = collect_runs([runs])
    path = save_records(from_folders, tmp_path / "records.json")
    assert load_records(path) == from_folders
    write_report([runs], tmp_path / "a")
    write_report([path], tmp_path / "b")
    for name in ("report.md", "report.csv", "runs.csv", "claims.md"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_saving_merges_by_run_name_and_a_folder_wins_over_its_record(tmp_path):
    first = tmp_path / "first"
    run_folder(first, "base-s0", 0, best_test_accuracy=0.5)
    path = save_records(collect_runs([first]), tmp_path / "records.json")
    second = tmp_path / "second"  # the same run read again, and a new one
    run_folder(second, "base-s0", 0, best_test_accuracy=0.6)
    run_folder(second, "base-s1", 1)
    records = collect_runs([path, second])
    assert [(r.run_dir.name, r.best_accuracy) for r in records] == [
        ("base-s0", 0.6), ("base-s1", 0.8)]
    save_records(records[1:], path)  # base-s0's record stays
    assert [r.run_dir.name for r in load_records(path)] == ["base-s0", "base-s1"]


def test_a_corrupted_records_file_is_named(tmp_path):
    path = tmp_path / "records.json"
    path.write_text("[{")
    with pytest.raises(ValueError, match="records.json: not valid JSON"):
        load_records(path)
    path.write_text(json.dumps([{"run_dir": "x", "seed": 0}]))
    with pytest.raises(ValueError, match="entry 0 is not a run record"):
        load_records(path)


def test_report_saves_records_from_the_cli(tmp_path, capsys):
    runs = tmp_path / "runs"
    run_folder(runs, "base-s0", 0)
    records = tmp_path / "records.json"
    assert main(["report", str(runs), "--output", str(tmp_path / "out"),
                 "--save-records", str(records)]) == 0
    assert [r.run_dir.name for r in load_records(records)] == ["base-s0"]
    assert main(["report", str(records), "--output", str(tmp_path / "again")]) == 0
    assert "records:" in capsys.readouterr().out


def pruned_run_with_log(root, name="mag-s0"):
    """A 5-epoch pruned run: rounds after epochs 1 and 2 (kept 8 -> 6 -> 4); the best test
    accuracy (0.9) is at epoch 2, tested before the second round."""
    folder = run_folder(root, name, 0, measure="magnitude", best_test_accuracy=0.9,
                        final_test_accuracy=0.7)
    rows = [(1, 0.5, 6), (2, 0.9, 4), (3, 0.6, 4), (4, 0.75, 4), (5, 0.7, 4)]
    lines = [f"{epoch},0.5,{test},{kept}\n" for epoch, test, kept in rows]
    (folder / "metrics.csv").write_text(
        "epoch,train_accuracy,test_accuracy,kept_filters\n" + "".join(lines))
    return folder


def test_best_after_pruning_selects_the_epochs_tested_at_the_final_size(tmp_path):
    (record,) = collect_runs([pruned_run_with_log(tmp_path)])
    # epoch 2 logs the final count (its round ran after its test): epochs 3-5 are at it
    assert record.pruned_by_epoch == 2
    assert record.best_accuracy == 0.9 and record.best_after_pruning == 0.75
    assert [row["kept_filters"] for row in record.epochs] == [6, 4, 4, 4, 4]
    # without a log: known only when the best is the final accuracy
    unlogged = dataclasses.replace(record, epochs=None)
    assert unlogged.best_after_pruning is None
    assert dataclasses.replace(unlogged, final_accuracy=0.9).best_after_pruning == 0.9


def test_report_tables_and_csv_carry_the_selection_after_the_last_round(tmp_path):
    pruned_run_with_log(tmp_path / "runs")
    markdown, csv_path, _ = write_report([tmp_path / "runs"], tmp_path / "out")
    text = markdown.read_text()
    first = text.split("\n## ")[0]
    assert first.startswith("## Test accuracy, best over the epochs after the last pruning round")
    assert "75.00" in first and "90.00" not in first
    assert {row.split(",")[0] for row in csv_path.read_text().splitlines()[1:]} == {
        "best_after_pruning", "final", "best"}


def test_cli_records_carry_the_log_the_cpu_and_the_commit(tmp_path):
    records = tmp_path / "records.json"
    pruned_run_with_log(tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "--output", str(tmp_path / "out"),
                 "--save-records", str(records), "--code-commit", "abc123"]) == 0
    (record,) = load_records(records)
    assert record.code_commit == "abc123" and record.cpu and "cores" in record.cpu
    assert record.epochs[1] == {"epoch": 2, "train_accuracy": 0.5, "test_accuracy": 0.9,
                                "kept_filters": 4}
    # one record per line, so a new run is a one-line diff
    assert len(records.read_text().splitlines()) == 3


def test_saving_records_on_a_full_disk_leaves_the_old_file_intact(tmp_path):
    run_folder(tmp_path / "runs", "base-s0", 0)
    path = save_records(collect_runs([tmp_path / "runs"]), tmp_path / "records.json")
    before = path.read_bytes()
    for seed in range(1, 40):
        run_folder(tmp_path / "runs", f"base-s{seed}", seed)
    # A file-size limit just above the old file stands in for a full disk.
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 512}, {len(before) + 512}))
        import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from tfprune.study.records import save_records
        from tfprune.study.report import collect_runs
        try:
            save_records(collect_runs([{str(tmp_path / 'runs')!r}]), {str(path)!r})
        except OSError as error:
            print("refused:", error.errno)
            sys.exit(3)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["records.json"]


def test_a_records_file_reports_after_its_run_folders_are_gone(tmp_path):
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = save_records(collect_runs([pruned_run_with_log(tmp_path / "runs")]),
                           tmp_path / "records.json")
    shutil.rmtree(tmp_path / "runs")  # a new machine: only the committed records remain
    write_report([records], tmp_path / "out")
    import tensorflow as tf

    trial = EventAccumulator(str(tmp_path / "out" / "hparams" / "mag-s0"),
                             size_guidance={"tensors": 0}).Reload()
    (event,) = trial.Tensors("hparams/best_after_pruning_test_accuracy")
    assert float(tf.make_ndarray(event.tensor_proto)) == pytest.approx(0.75)


def test_a_run_with_the_optimizer_reset_is_its_own_cell(tmp_path):
    import yaml

    folder = run_folder(tmp_path / "runs", "prop-reset-s0", 0, measure="proposed")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["prune"]["reset_optimizer"] = True
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    run_folder(tmp_path / "runs", "prop-s0", 0, measure="proposed")
    labels = sorted(record.measure for record in collect_runs([tmp_path / "runs"]))
    assert labels == ["Proposed", "Proposed + optimizer reset"]
    write_report([tmp_path / "runs"], tmp_path / "out")  # no "same cell and seed" refusal
