"""``tfprune train CONFIG [--set key=value ...] | --resume RUN_DIR``."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Adds the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train", help="train a model from a YAML config with the paper's recipe",
        description="Train a model from a YAML config (paper recipe by default) into a run "
                    "folder; an interrupted run continues with --resume RUN_DIR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=10 (repeatable)",
    )
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted run from its last finished epoch")
    parser.set_defaults(parser=parser)


def run(args) -> int:
    """Trains, prints the summary and returns 0."""
    if bool(args.config) == bool(args.resume):
        args.parser.error("give either CONFIG or --resume RUN_DIR")
    if args.resume and args.overrides:
        args.parser.error("--set cannot change a resumed run; its config.yaml is used as is")
    from tfprune.training import resume_run, train_from_file

    result = resume_run(args.resume) if args.resume else train_from_file(
        args.config, args.overrides
    )
    summary = result.summary
    print(f"run folder: {result.run_dir}")
    print(f"test accuracy: final {summary['final_test_accuracy']:.4f}, "
          f"best {summary['best_test_accuracy']:.4f} (epoch {summary['best_epoch']}); "
          f"params {summary['params']:,}")
    return 0
