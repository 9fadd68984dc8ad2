"""Records files: a study's finished runs kept as their RunRecords, not as run folders."""

import json

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
