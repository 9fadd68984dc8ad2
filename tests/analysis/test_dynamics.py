"""The dynamics recorder against hand computations, and ``tfprune analyze`` end to end."""

import csv

import numpy as np
import pytest
from cli.test_cli import tiny_config

from tfprune.analysis.dynamics import _early_bird_mask
from tfprune.analysis.statistics import correlation
from tfprune.cli.main import main


def test_correlation_matches_hand_computation_and_handles_degenerate_input():
    x, y = np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 5])
    xc, yc = x - x.mean(), y - y.mean()
    pearson, spearman = correlation(x, y)
    assert pearson == pytest.approx((xc @ yc) / np.sqrt((xc @ xc) * (yc @ yc)))
    assert spearman == pytest.approx(0.8)  # ranks 1,2,3,4 vs 1,3,2,4
    assert np.isnan(correlation([1, 1, 1], [1, 2, 3])[0])
    assert np.isnan(correlation([1, 2], [2, 1])[1])


def test_early_bird_mask_marks_the_smallest_scales():
    mask = _early_bird_mask(np.array([0.5, -0.1, 2.0, 0.05, -3.0]), 0.4)
    assert mask.tolist() == [False, True, False, True, False]


def test_analyze_training_records_every_epoch_and_resumes(image_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(image_folder, epochs=2))
    run = tmp_path / "run"
    assert main(["analyze", "training", str(config), "--set", f"run.dir={run}",
                 "--num-samples", "12", "--samples-per-class", "2", "--hessian-epochs", "0",
                 "2"]) == 0
    assert "figures and data:" in capsys.readouterr().out
    analysis = run / "analysis"
    rows = list(csv.DictReader((analysis / "dynamics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert np.isnan(float(rows[0]["bn_pearson"]))  # no change before the first epoch
    for row in rows[1:]:
        assert -1 <= float(row["bn_pearson"]) <= 1 and 0 <= float(row["mask_distance"]) <= 1
        assert -1 <= float(row["norm_distance_pearson"]) <= 1
    assert np.isfinite(float(rows[2]["hg_g_pearson"])) and np.isnan(float(rows[1]["hg_g_pearson"]))
    with np.load(analysis / "epoch_002.npz") as last, np.load(analysis / "epoch_001.npz") as prev:
        gamma = np.concatenate([last[k] for k in sorted(last.files) if k.startswith("gamma_")])
        before = np.concatenate([prev[k] for k in sorted(prev.files) if k.startswith("gamma_")])
        # The recorded |sigma delta sigma| is the product of the saved scales.
        np.testing.assert_allclose(last["sigma_delta"], np.abs(gamma * (gamma - before)))
        expected = correlation(last["sigma_delta"], last["bn_loss_preservation"])[0]
        assert float(rows[2]["bn_pearson"]) == pytest.approx(expected)
        assert float(rows[2]["mask_distance"]) == pytest.approx(np.mean(last["mask"]
                                                                        != prev["mask"]))
        assert last["theta_g"].shape == last["theta_hg"].shape == (172,)  # every filter
    for name in ("dynamics.png", "hg_vs_g_epoch_000.png", "hg_vs_g_epoch_002.png",
                 "gradient_norms.png"):
        assert (analysis / name).stat().st_size > 1000, name
    assert list((run / "tensorboard/analysis").glob("events.out.tfevents.*"))


def test_analyze_runs_compares_prune_runs(image_folder, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(tiny_config(image_folder, epochs=1, prune="{measure: magnitude, "
                                  "target: 0.5}"))
    run = tmp_path / "mag"
    assert main(["prune", str(config), "--set", f"run.dir={run}"]) == 0
    output = tmp_path / "out"
    assert main(["analyze", "runs", str(run), "--output", str(output)]) == 0
    rows = list(csv.DictReader((output / "layer_ratios.csv").open()))
    assert rows[0]["run"] == "Mag., 1 round (mag)"
    assert len(rows) == 8 and all(0 <= float(r["fraction_pruned"]) <= 1 for r in rows)
    for name in ("layer_ratios.png", "train_accuracy.png", "test_accuracy.png", "curves.csv"):
        assert (output / name).is_file()
    assert main(["analyze", "runs", str(run), "--output", str(output)]) == 0  # drawn again
    assert len(list((output / "analysis_tensorboard").glob("events.out.tfevents*"))) == 1
    assert main(["analyze", "runs", str(tmp_path / "nothing")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    # Pointed at a run folder, it adds its files and deletes nothing of the run's.
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["analyze", "runs", str(run), "--output", str(run)]) == 0
    assert main(["analyze", "runs", str(run), "--output", str(run)]) == 0
    assert all(p.is_file() and p.read_bytes() == data for p, data in before.items())
    # A file of the user's with one of its names is refused, untouched, unless --force.
    (output / "mine").mkdir()
    (output / "mine" / "curves.csv").write_text("my curves")
    assert main(["analyze", "runs", str(run), "--output", str(output / "mine")]) == 2
    assert "curves.csv already exist(s), and tfprune never overwrites" in capsys.readouterr().err
    assert (output / "mine" / "curves.csv").read_text() == "my curves"
    assert main(["analyze", "runs", str(run), "--output", str(output / "mine"), "--force"]) == 0
