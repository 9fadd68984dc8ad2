"""One real-data check: a narrow VGG-13 learns CIFAR-10 from the shared JPEG copy.

Measured on 2 CPU cores (2026-11-22): test accuracy 0.409 after 6 epochs (best 0.419),
about 2 minutes plus a one-time ~50 s extraction of the zip into the cache. Chance is
0.10; the threshold 0.25 leaves a wide margin for seed and platform noise.
"""

import json

import pytest
from conftest import SHARED_CIFAR10_ZIP

from tfprune.config import validate
from tfprune.training import train

THRESHOLD = 0.25


@pytest.mark.skipif(not SHARED_CIFAR10_ZIP.exists(), reason="../shared CIFAR-10 copy absent")
def test_narrow_vgg13_beats_chance_clearly_on_real_cifar10(tmp_path, monkeypatch):
    monkeypatch.delenv("TFPRUNE_CACHE_DIR")  # reuse the machine's extraction cache
    config = validate({
        "model": {"name": "vgg13", "width_multiplier": 0.25},
        "data": {"source": str(SHARED_CIFAR10_ZIP), "batch_size": 64,
                 "train_per_class": 400, "test_per_class": 100},
        "train": {"epochs": 6, "verbose": 2},
        "run": {"dir": str(tmp_path / "run")},
    })
    result = train(config)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    print("real CIFAR-10 test accuracy:", summary["final_test_accuracy"])
    assert summary["final_test_accuracy"] > THRESHOLD
