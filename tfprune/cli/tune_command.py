"""``tfprune tune CONFIG``: keras-tuner search over measure, rounds, target and temperature."""

from __future__ import annotations

import argparse

from tfprune.cli.run_command import add_config_arguments


def add_parser(subparsers) -> None:
    """Adds the ``tune`` subcommand."""
    parser = subparsers.add_parser(
        "tune", help="search measure, rounds, target and GraSP temperature with keras-tuner",
        description="keras-tuner search (config section 'tune') over the pruning measure, the "
                    "number of rounds, the target fraction and the GraSP temperature, under "
                    "tune.max_params / tune.max_flops. Each trial is a prune run folder in "
                    "RUN_DIR/trials; running the same command again continues the search. In "
                    "keras-tuner's distributed mode (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, "
                    "KERASTUNER_ORACLE_PORT) workers run trials and the chief alone writes "
                    "tuning.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)


def run(args) -> int:
    """Searches, prints the trials by score and the best one; returns 0."""
    from tfprune.study.tuning import tune_from_file

    result = tune_from_file(args.config, args.overrides)
    if result["role"] == "worker":
        print(f"{result['tuner_id']}: the oracle has stopped; the chief writes tuning.json")
        return 0
    for trial in result["trials"]:
        metrics = trial["metrics"]
        print(f"trial {trial['trial']}: score {metrics['score']:.4f} (test accuracy "
              f"{metrics['best_test_accuracy']:.4f}, params {metrics['params_after']:,.0f}, "
              f"FLOPs {metrics['flops_after']:,.0f}) {trial['hyperparameters']}")
    if result["best"]:
        print(f"best: {result['best']['hyperparameters']} in {result['best']['run_dir']}")
    return 0
