"""Test accuracy of a fine-tuning run's model right after pruning, before any fine-tuning.

Loads the run's source model (``finetune.source``), applies the run's first plan
(``plans/epoch_000``, made before the first epoch) and evaluates it on the run's
test data, beside the dense source model.

Usage:
    python scripts/finetune_start_accuracy.py RUN_DIR
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfprune  # noqa: E402
from tfprune.pruning import PruningPlan  # noqa: E402
from tfprune.run_folder import RunFolder  # noqa: E402
from tfprune.training import read_run_config  # noqa: E402
from tfprune.workflows.finetune import source_path  # noqa: E402
from tfprune.workflows.model_sources import run_data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    args = parser.parse_args()
    data = run_data(args.run_dir)
    model = keras.models.load_model(source_path(read_run_config(args.run_dir)))
    dense = model.evaluate(data.test_dataset(), verbose=0, return_dict=True)
    tfprune.apply_plan(model, PruningPlan.load(RunFolder(args.run_dir).plans / "epoch_000.npz"))
    pruned = model.evaluate(data.test_dataset(), verbose=0, return_dict=True)
    print(f"dense accuracy {dense['accuracy']:.4f}; pruned, not fine-tuned "
          f"{pruned['accuracy']:.4f}")


if __name__ == "__main__":
    main()
