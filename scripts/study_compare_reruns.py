"""Compares a rerun's record with its run's original record (reruns.json vs records.json).

A rerun of a finished study run must reproduce it: every accuracy, the best epoch,
the parameter and FLOPs counts. Prints one line per compared field that differs and
a verdict; exits 0 when the rerun equals its record, 1 when it differs, 2 when a
record is missing.

Usage: python scripts/study_compare_reruns.py RECORDS.json RERUNS.json RUN_NAME...
"""

from __future__ import annotations

import argparse
import sys

from tfprune.study.records import load_records

FIELDS = ("best_accuracy", "final_accuracy", "best_epoch", "mean_train_accuracy",
          "early_pruned", "params", "flops")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("reruns")
    parser.add_argument("names", nargs="+", metavar="RUN_NAME")
    args = parser.parse_args(argv)
    original = {record.run_dir.name: record for record in load_records(args.records)}
    rerun = {record.run_dir.name: record for record in load_records(args.reruns)}
    status = 0
    for name in args.names:
        if name not in original or name not in rerun:
            print(f"{name}: no record in {args.records if name not in original else args.reruns}")
            status = max(status, 2)
            continue
        differing = [f"{field} {getattr(original[name], field)} -> {getattr(rerun[name], field)}"
                     for field in FIELDS
                     if getattr(original[name], field) != getattr(rerun[name], field)]
        verdict = "DIFFERS: " + "; ".join(differing) if differing else "equals its record"
        print(f"{name}: {verdict}")
        status = max(status, 1 if differing else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
