"""``tfprune pipeline``, ``export`` and ``bench`` on a tiny model and image folder."""

import json

import keras
import numpy as np
import pytest
from cli.test_cli import tiny_config
from conftest import write_image_folder

from tfprune.cli.main import main

DEPLOY = "deploy: {quantize: [none, dynamic], verify_samples: 6, bench_repeats: 2, threads: [1]}\n"


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """A finished tiny pipeline run folder and what ``tfprune pipeline`` printed."""
    root = tmp_path_factory.mktemp("pipeline")
    images = write_image_folder(root / "images")
    config = root / "c.yaml"
    config.write_text(tiny_config(images, epochs=2, prune="{measure: proposed, target: 0.5, "
                                                          "rounds: 1, num_samples: 12}") + DEPLOY)
    run = root / "run"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["pipeline", str(config), "--set", f"run.dir={run}"]) == 0
    return run, out.getvalue()


def test_pipeline_prunes_slims_exports_verifies_and_times(pipeline_run):
    run, out = pipeline_run
    summary = json.loads((run / "pipeline.json").read_text())
    assert "pruned 50.0% of prunable filters" in out and "ratios against dense" in out
    slimmed = keras.models.load_model(run / "slim.keras")
    assert slimmed.count_params() == summary["params_after"]
    assert summary["slim_test_accuracy"] == pytest.approx(summary["final_test_accuracy"])
    exports = {export["quantize"]: export for export in summary["exports"]}
    assert set(exports) == {"none", "dynamic"}
    assert exports["none"]["passed"] and exports["none"]["verification"]["max_abs_diff"] <= 1e-3
    assert exports["none"]["inputs"] == "test split"
    assert exports["none"]["verification"]["examples"] == 6  # the whole tiny test split
    for export in exports.values():
        assert (run / "export" / f"slim_{export['quantize']}.tflite").is_file()
    dense, slim = summary["bench"]
    assert dense["label"] == "dense" and slim["flops"] < dense["flops"]
    assert summary["speedups"]["flops_reduction"] == pytest.approx(dense["flops"] / slim["flops"])
    assert slim["tflite_bytes"] < dense["tflite_bytes"]


def test_export_a_run_folder(pipeline_run, tmp_path, capsys):
    run, _ = pipeline_run
    assert main(["export", str(run), "--quantize", "none", "--output-dir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "slim_none.tflite (none)" in out and "check (max abs diff of outputs <= 0.001): passed" \
        in out
    (report,) = json.loads((tmp_path / "export.json").read_text())
    assert report["params"] == keras.models.load_model(run / "slim.keras").count_params()


def test_export_a_bare_model_verifies_on_random_inputs(pipeline_run, tmp_path, capsys):
    run, _ = pipeline_run
    model_path = tmp_path / "dense.keras"
    model_path.write_bytes((run / "model.keras").read_bytes())
    assert main(["export", str(model_path)]) == 0
    assert "on 200 random inputs" in capsys.readouterr().out
    # into a folder of its own: nothing is written beside the user's model
    assert (tmp_path / "dense_export" / "dense_none.tflite").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.keras", "dense_export"]
    assert main(["export", str(model_path)]) == 0  # its own files are replaced
    capsys.readouterr()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "export.json").write_text("{}")
    assert main(["export", str(model_path), "--output-dir", str(mine)]) == 2
    assert "export.json already exist(s)" in capsys.readouterr().err
    assert (mine / "export.json").read_text() == "{}"
    assert main(["export", str(model_path), "--quantize", "int8"]) == 2
    assert "int8 calibrates on training data; pass --data SOURCE" in capsys.readouterr().err


def test_export_refuses_what_is_not_a_model(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "no model.keras" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "m.h5")]) == 2
    assert "not a run folder or a .keras file" in capsys.readouterr().err


def test_bench_a_run_folder_times_dense_and_slim(pipeline_run, tmp_path, capsys):
    run, _ = pipeline_run
    rows_path = tmp_path / "rows.json"
    assert main(["bench", str(run), "--repeats", "2", "--warmup", "1", "--threads", "1", "2",
                 "--json", str(rows_path)]) == 0
    out = capsys.readouterr().out
    assert "run (dense)" in out and "run (slim)" in out and "LiteRT 2t" in out
    dense, slim = json.loads(rows_path.read_text())
    assert set(dense["litert_ms"]) == {"1", "2"}
    assert all(np.isfinite(ms) and ms > 0 for ms in dense["litert_ms"].values())
    assert slim["params"] < dense["params"]


def test_slim_and_bench_never_overwrite_a_users_file(pipeline_run, tmp_path, capsys):
    run, _ = pipeline_run
    assert main(["slim", str(run), "--output", str(tmp_path / "slim.txt")]) == 2
    assert "a slimmed model is saved as a .keras file" in capsys.readouterr().err
    mine = tmp_path / "mine.keras"
    mine.write_text("my model")
    assert main(["slim", str(run), "--output", str(mine)]) == 2
    assert "mine.keras: already exists, and tfprune never overwrites" in capsys.readouterr().err
    assert mine.read_text() == "my model"
    assert main(["slim", str(run), "--output", str(mine), "--force"]) == 0
    assert keras.models.load_model(mine).count_params() < keras.models.load_model(
        run / "model.keras").count_params()
    table = tmp_path / "bench.json"
    table.write_text("my table")
    assert main(["bench", str(mine), "--json", str(table), "--repeats", "1", "--warmup", "0",
                 "--threads", "1"]) == 2
    assert table.read_text() == "my table"
    assert main(["bench", str(mine), "--json", str(table), "--repeats", "1", "--warmup", "0",
                 "--threads", "1", "--force"]) == 0
    assert json.loads(table.read_text())[0]["label"] == "mine.keras"


def test_export_names_a_truncated_slim_model_and_how_to_redo_it(pipeline_run, tmp_path,
                                                                 capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pipeline_run[0], run)
    (run / "slim.keras").write_bytes(b"")  # a slim killed before slims were atomic
    assert main(["export", str(run), "--output-dir", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "slim.keras: truncated or not a .keras file" in error
    assert f"run tfprune slim {run} again" in error
