"""``tfprune grid CONFIG... --seeds N``: many runs, one after another, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfprune.run_folder import RunFolder
from tfprune.study.run_claims import STALE_SECONDS


def add_parser(subparsers) -> None:
    """Adds the ``grid`` subcommand."""
    parser = subparsers.add_parser(
        "grid", help="run configs x seeds one after another (resumable, finished runs skipped)",
        description="Run every CONFIG for each seed into RUNS_DIR/<run.name>-s<seed>: configs "
                    "with a prune section run prune-and-train, the others plain training (base "
                    "models). Finished runs are skipped and interrupted ones resumed, so the "
                    "same command continues a grid. Every config is checked before the first "
                    "run; a run that fails is reported and the grid goes on (exit code 1). "
                    "Many processes may share one grid (a job array, several machines on a "
                    "shared folder): each run is claimed before it starts, a run another live "
                    "process holds is skipped, and --shard I/N gives each process a fixed "
                    "share.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config files")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per config")
    parser.add_argument("--first-seed", type=int, default=0, help="the first train.seed")
    parser.add_argument("--runs-dir", default="runs/grid", help="where the run folders go")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override a value in every config")
    parser.add_argument("--shard", metavar="I/N",
                        help="run only share I (from 0) of N: every N-th run from the I-th, "
                             "e.g. --shard $SLURM_ARRAY_TASK_ID/4 in a job array of 4")
    parser.add_argument("--stale-after", type=float, default=STALE_SECONDS, metavar="SECONDS",
                        help="take over another process's claim on a run after this long "
                             "without its heartbeat")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs and their state without running them")


def run(args) -> int:
    """Runs (or lists) the grid; 1 if a run failed."""
    from tfprune.study.grid import grid_items, parse_shard, run_grid, shard_items

    shard = parse_shard(args.shard) if args.shard else None
    items = grid_items(args.configs, args.seeds, args.runs_dir, args.overrides,
                       args.first_seed)
    if shard:
        items = shard_items(items, *shard)
        print(f"grid: shard {shard[0]}/{shard[1]}: {len(items)} run(s)")
    if args.dry_run:
        for item in items:
            print(f"{item.state:>6}  {item.run_dir}  ({'prune' if item.prune else 'train'} "
                  f"{item.source}, seed {item.seed})")
        return 0
    outcome = run_grid(items, progress=lambda line: print(line, flush=True),
                       stale_after=args.stale_after)
    print(f"grid: {len(outcome['ran'])} ran, {len(outcome['done'])} already finished, "
          f"{len(outcome['elsewhere'])} running elsewhere, {len(outcome['failed'])} failed")
    finished = [d for d in outcome["ran"] + outcome["done"] if RunFolder(d).state == "finished"]
    if finished and not shard and not outcome["elsewhere"]:
        # one writer: the process that sees the whole grid end (a shard sees only its part)
        from tfprune.study.hparams import write_hparams
        from tfprune.study.records import read_run

        folder = write_hparams([read_run(d) for d in finished], Path(args.runs_dir) / "hparams")
        print(f"HParams dashboard: tensorboard --logdir {folder}")
    for run_dir in outcome["failed"]:
        print(f"  failed: {run_dir}")
    return 1 if outcome["failed"] else 0
