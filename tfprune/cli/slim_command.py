"""``tfprune slim RUN_DIR``: the physically smaller model of a prune run, with a summary table."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Adds the ``slim`` subcommand."""
    parser = subparsers.add_parser(
        "slim", help="rebuild a prune run's model with only the kept channels",
        description="Load RUN_DIR/model.keras and the run's last plan (RUN_DIR/plans), rebuild "
                    "the model with only the kept channels, save RUN_DIR/slim.keras and print "
                    "filters per layer and params / FLOPs before and after.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="a folder written by tfprune prune")
    parser.add_argument("--output", metavar="PATH",
                        help="where to save, a .keras file (default RUN_DIR/slim.keras, "
                             "replaced when slim runs again)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files that tfprune did not write")


def summary_table(model, slimmed) -> str:
    """Per kernel layer: filters before -> after; then params and FLOPs before -> after."""
    from tfprune.pruning.stats import flops, kernel_calls

    before = {call.name: int(call.outputs[0].shape[-1]) for call in kernel_calls(model)}
    after = {call.name: int(call.outputs[0].shape[-1]) for call in kernel_calls(slimmed)}
    width = max(len(name) for name in before)
    lines = [f"{'layer':<{width}}  {'filters':>8}  {'kept':>8}"]
    for name, filters in before.items():
        lines.append(f"{name:<{width}}  {filters:>8}  {after.get(name, filters):>8}")
    lines.append(f"params {model.count_params():,} -> {slimmed.count_params():,}; "
                 f"FLOPs {flops(model):,} -> {flops(slimmed):,}")
    return "\n".join(lines)


def run(args) -> int:
    """Slims, saves and prints the table; returns 0."""
    from tfprune.workflows.model_sources import slim_run

    model, slimmed, output = slim_run(args.run_dir, args.output, force=args.force)
    print(summary_table(model, slimmed))
    print(f"saved: {output}")
    return 0
