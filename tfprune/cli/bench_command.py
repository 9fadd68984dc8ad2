"""``tfprune bench MODEL [MODEL ...]``: batch-1 latency in Keras and LiteRT, beside FLOPs."""

from __future__ import annotations

import argparse
import dataclasses


def add_parser(subparsers) -> None:
    """Adds the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench", help="time models at batch 1 in Keras and LiteRT (1 and 2 threads)",
        description="Median batch-1 latency after warm-up, in Keras and in the LiteRT "
                    "interpreter, with params, FLOPs and .tflite size; ratios against the "
                    "first model put the FLOPs reduction beside the speedup. A prune run "
                    "folder counts as two models: its dense (masked) and its slimmed model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("models", nargs="+", metavar="MODEL",
                        help=".keras files or tfprune run folders")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="LiteRT interpreter thread counts")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs (median kept)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files that tfprune did not write")


def run(args) -> int:
    """Times every model and prints the table; returns 0."""
    from tfprune.atomic import write_json
    from tfprune.config import ConfigError
    from tfprune.export.bench import bench_models, format_bench
    from tfprune.outputs import refuse_overwrite
    from tfprune.workflows.model_sources import bench_sources

    if args.repeats < 1 or args.warmup < 0 or min(args.threads) < 1:
        raise ConfigError("--repeats and --threads must be >= 1, --warmup >= 0.")
    if args.json:
        refuse_overwrite(args.json, args.force)  # before any timing
    sources = bench_sources(args.models)
    rows = bench_models([(source.label, source.load()) for source in sources],
                        threads=args.threads, repeats=args.repeats, warmup=args.warmup)
    print(format_bench(rows))
    if args.json:
        write_json(args.json, [dataclasses.asdict(row) for row in rows], indent=2)
    return 0
