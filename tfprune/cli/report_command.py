"""``tfprune report RUN_DIRS``: Tables 1-3 from run folders or records files, Markdown and CSV."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Adds the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report", help="build the paper's Tables 1-3 from run folders (Markdown and CSV)",
        description="Collect every finished run folder at or below RUN_DIRS and write the "
                    "layout of the paper's Tables 1, 2 and 3 (best and final test accuracy): "
                    "mean and std over seeds, best in bold, base (unpruned) accuracy in "
                    "parentheses; report.csv with every cell and its paired difference (by "
                    "seed, 95%% interval) from the base and every other measure; every run "
                    "on its own row (runs.csv and report.md's Runs section); and claims.md: "
                    "each of the paper's Table 1-3, Fig. 1 and G.2 claims as holds, "
                    "contradicted or not resolved, from paired differences.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run folders, folders holding them, or records files (*.json, "
                             "written by --save-records)")
    parser.add_argument("--save-records", metavar="FILE", default=None,
                        help="also merge every run read into this records file (*.json: one "
                             "small record per run, which the tables need and git can keep, "
                             "instead of the run folders)")
    parser.add_argument("--output", default="reports",
                        help="folder for report.md, report.csv and claims.md")
    parser.add_argument("--metric", default="best_after_pruning",
                        choices=["best_after_pruning", "final", "best"],
                        help="the accuracy claims.md reads and report.md shows first: the best "
                             "over the epochs after the last pruning round, the final one, or "
                             "the best over all epochs (the paper's selection, which also "
                             "counts networks not yet at their target)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files that tfprune did not write")
    parser.add_argument("--code-commit", metavar="SHA", default=None,
                        help="with --save-records: the commit of the code that trained the "
                             "run folders read (kept in their records, with this machine's "
                             "CPU model, unless their summary names them)")


def run(args) -> int:
    """Writes and prints the report; returns 0."""
    from tfprune.config import ConfigError
    from tfprune.provenance import machine_cpu
    from tfprune.run_folder import RunFolder
    from tfprune.study.records import (
        collect_runs,
        is_records_file,
        save_records,
        stamp,
    )
    from tfprune.study.report import write_report

    if args.save_records and not is_records_file(args.save_records):
        raise ConfigError(f"--save-records {args.save_records}: a records file ends in .json.")
    try:
        records = collect_runs(args.run_dirs)
        markdown, csv_path, claims = write_report(args.run_dirs, args.output, args.metric,
                                                  records=records, force=args.force)
        if args.save_records:
            on_disk = [RunFolder(record.run_dir).summary.is_file() for record in records]
            stamped = stamp([r for r, fresh in zip(records, on_disk, strict=True) if fresh],
                            args.code_commit, machine_cpu())
            kept = [r for r, fresh in zip(records, on_disk, strict=True) if not fresh]
            print(f"records: {save_records(kept + stamped, args.save_records)}")
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(str(error)) from None
    print(markdown.read_text())
    print("Which of the paper's claims hold in these runs:\n")
    print(claims.read_text())
    print(f"written: {markdown}, {csv_path}, {csv_path.with_name('runs.csv')}, {claims}")
    return 0
