"""One real-data check, end to end: the main pipeline on the shared CIFAR-10 JPEG copy.

A narrow VGG-13 is pruned by half after its first epoch with the paper's proposed measure
(g over 512 samples, not the reference's 2560, to save the test 13 s),
trained on for 3 epochs in all, slimmed, exported to a float .tflite file and verified in
LiteRT. (int8 is checked on a confidently trained model in tests/export/test_deploy.py, and
on real data by the main job, scripts/main.sh.) Measured on 2 CPU cores (2026-12-05, one
TensorFlow thread as in the test command): test accuracy 0.239 (with 5 epochs, 2026-11-23:
0.30); with TensorFlow's default threads (another order of float sums) 0.217.
Chance is 0.10, and an accuracy measured on 1000 test images has a standard error of
about 0.01 near it: the threshold 0.15 is five of them above chance, so passing says the
pipeline learns from real data, while run-to-run noise of a barely trained model
(0.217 to 0.239) stays well clear of it.
"""

import pytest
from conftest import SHARED_CIFAR10_ZIP

from tfprune.config import validate
from tfprune.pipeline import run_pipeline

THRESHOLD = 0.15


@pytest.mark.skipif(not SHARED_CIFAR10_ZIP.exists(), reason="../shared CIFAR-10 copy absent")
def test_pipeline_on_real_cifar10_learns_slims_and_exports(tmp_path, monkeypatch):
    monkeypatch.delenv("TFPRUNE_CACHE_DIR")  # reuse the machine's extraction cache
    config = validate({
        "model": {"name": "vgg13", "width_multiplier": 0.25},
        "data": {"source": str(SHARED_CIFAR10_ZIP), "batch_size": 64,
                 "train_per_class": 300, "test_per_class": 100},
        "train": {"epochs": 3, "verbose": 2},
        "prune": {"measure": "proposed", "target": 0.5, "rounds": 1, "num_samples": 512},
        "deploy": {"quantize": ["none"], "verify_samples": 300, "bench_repeats": 1,
                   "threads": [1]},
        "run": {"dir": str(tmp_path / "run")},
    })
    summary = run_pipeline(config).summary
    exports = {export["quantize"]: export for export in summary["exports"]}
    print("real CIFAR-10:", summary["final_test_accuracy"], summary["slim_test_accuracy"],
          {q: (e["tflite_accuracy"], e["verification"]) for q, e in exports.items()},
          summary["bench_table"], sep="\n")
    assert summary["final_test_accuracy"] > THRESHOLD
    assert summary["fraction_removed"] == pytest.approx(0.5, abs=1e-3)
    # The slimmed model is the masked one without its zeros: the same predictions.
    assert summary["slim_test_accuracy"] == pytest.approx(summary["final_test_accuracy"],
                                                          abs=0.002)
    assert exports["none"]["verification"]["max_abs_diff"] <= 1e-3
    assert exports["none"]["verification"]["examples"] == 300 and exports["none"]["passed"]
    assert [row["label"] for row in summary["bench"]] == ["dense", "slim"]
