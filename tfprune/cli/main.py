"""The ``tfprune`` command: one subcommand per capability."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from tfprune.cli import (
    analyze_command,
    bench_command,
    export_command,
    grid_command,
    groups_command,
    report_command,
    score_command,
    sensitivity_command,
    slim_command,
    tune_command,
)
from tfprune.cli.run_command import FINETUNE, PIPELINE, PRUNE, TRAIN

#: Subcommands; each has ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS = {"train": TRAIN, "score": score_command, "prune": PRUNE, "groups": groups_command,
            "slim": slim_command, "export": export_command, "bench": bench_command,
            "pipeline": PIPELINE, "grid": grid_command, "report": report_command,
            "analyze": analyze_command, "tune": tune_command,
            "sensitivity": sensitivity_command, "finetune": FINETUNE}


def make_parser() -> argparse.ArgumentParser:
    """Builds the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tfprune",
        description="Structured pruning early in training for Keras 3 (gradient-flow framework).",
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE first (repeatable; the current folder is searched): a module "
             "that registers your custom layers, losses or layer handlers, so model files "
             "using them load")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    args = make_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfprune.config import ConfigError
    from tfprune.data import DataError
    from tfprune.export.tflite import LiteRTError
    from tfprune.graph.channels import GraphError
    from tfprune.importance.scores import ScoringError
    from tfprune.pruning.plan import PlanError
    from tfprune.storage import StorageError
    from tfprune.workers import WorkersDisagreeError

    try:
        import_modules(args.imports)
        return COMMANDS[args.command].run(args)
    except (ConfigError, DataError, ScoringError, GraphError, PlanError, StorageError,
            LiteRTError, WorkersDisagreeError) as error:
        print(f"tfprune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except _lost_worker_errors() as error:
        if not os.environ.get("TF_CONFIG"):  # not a cluster: no worker to have lost
            raise
        print(f"tfprune {args.command}: error: {describe_lost_worker(error)}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\ninterrupted; finished epochs are checkpointed: resume with --resume RUN_DIR",
              file=sys.stderr)
        return 130
    except OSError as error:  # a full disk, a permission: one line, never a traceback
        print(f"tfprune {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 2


def _lost_worker_errors() -> tuple:
    """TensorFlow's errors for a collective whose peer died or never answered.

    Described as a lost worker only in a cluster (``TF_CONFIG`` set); elsewhere
    they are not expected, and propagate as they are.
    """
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)


def describe_lost_worker(error) -> str:
    """One line for a multi-worker run whose collectives were aborted (a worker was lost)."""
    reason = " ".join(str(getattr(error, "message", error)).split())[:300]
    return (f"the cluster lost a worker ({reason}). Every worker stops when one does: the "
            "chief's run folder keeps its last finished epoch. Restart every worker with "
            "the same TF_CONFIG and `--resume RUN_DIR`; they go on from that epoch with "
            "the same plan.")


#: errno values that mean "the disk is full" (or a file-size limit stands in for it).
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe_os_error(error: OSError) -> str:
    """One line naming the file and what to do, for an operating-system error."""
    where = f"{error.filename}: " if error.filename else ""
    if error.errno in _DISK_FULL:
        return (f"{where}no space left on the device ({error.strerror or error}). Every file "
                "tfprune writes is replaced atomically, so nothing finished was damaged: free "
                "space (or point $TFPRUNE_CACHE_DIR / run.dir at a larger disk), then run the "
                "same command again; an interrupted run resumes from its last finished epoch "
                "with --resume RUN_DIR.")
    return f"{where}{error.strerror or error}."


def import_modules(names: list[str]) -> None:
    """Imports the ``--import`` modules, the current folder first on the search path.

    Raises:
        ConfigError: Naming the module that cannot be imported and why.
    """
    import importlib

    from tfprune.config import ConfigError

    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - any failure of the user's module is named
            raise ConfigError(f"--import {name}: cannot import it ({type(error).__name__}: "
                              f"{error}).") from None


if __name__ == "__main__":
    sys.exit(main())
