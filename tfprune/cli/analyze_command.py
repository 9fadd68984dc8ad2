"""``tfprune analyze training CONFIG`` and ``tfprune analyze runs RUN_DIR...``."""

from __future__ import annotations

import argparse

from tfprune.cli.run_command import add_config_arguments


def add_parser(subparsers) -> None:
    """Adds ``analyze`` with its two modes."""
    parser = subparsers.add_parser(
        "analyze", help="the paper's analyses: training dynamics, or comparisons of prune runs",
        description="Figures (PNG), data (CSV) and TensorBoard summaries for the paper's "
                    "observations.", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    modes = parser.add_subparsers(dest="mode", metavar="MODE", required=True)
    training = modes.add_parser(
        "training", help="train a config and record Observations 2-4, Section 4.1, Fig. 21",
        description="Train CONFIG (plain training) while recording per epoch: the correlation "
                    "of |sigma delta sigma| with |sigma g_sigma| (BN scales) beside the "
                    "early-bird mask distance (Fig. 2), the same per weight (Fig. 31), the "
                    "correlation of filter norms with their distance from initialization "
                    "(Section 4.1), layer-wise gradient norms (Fig. 21), and at "
                    "--hessian-epochs the per-filter Theta^T H g against Theta^T g (Fig. 3). "
                    "Writes RUN_DIR/analysis; --resume continues an interrupted run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(training, config_required=False)
    training.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    training.add_argument("--hessian-epochs", type=int, nargs="+", metavar="E",
                          help="epochs with Hg (0 = initialization; default 0, middle, last)")
    training.add_argument("--num-samples", type=int, default=512, help="samples for g per epoch")
    training.add_argument("--samples-per-class", type=int, default=10,
                          help="memory per class for Hg")
    training.set_defaults(parser=training)
    runs = modes.add_parser(
        "runs", help="compare finished prune runs: layer-wise ratios (Figs. 16-20), curves",
        description="Layer-wise pruning ratios (Figs. 16-20) and train/test accuracy curves "
                    "(Fig. 1) of finished run folders, labelled by measure and rounds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    runs.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    runs.add_argument("--output", default="reports/analysis", help="folder for the files")
    runs.add_argument("--force", action="store_true",
                      help="replace existing files that tfprune did not write")


def run(args) -> int:
    """Runs the chosen analysis and lists what it wrote; returns 0."""
    from tfprune.config import ConfigError

    if args.mode == "runs":
        from tfprune.analysis import analyze_runs

        try:
            files = analyze_runs(args.run_dirs, args.output, force=args.force)
        except FileNotFoundError as error:
            raise ConfigError(str(error)) from None
        for path in files.values():
            print(f"written: {path}")
        return 0
    from tfprune.analysis.training import analyze_training_from_file, resume_analysis

    if bool(args.config) == bool(args.resume):
        args.parser.error("give either CONFIG or --resume RUN_DIR")
    options = {"hessian_epochs": args.hessian_epochs, "num_samples": args.num_samples,
               "samples_per_class": args.samples_per_class}
    result = (resume_analysis(args.resume, **options) if args.resume
              else analyze_training_from_file(args.config, args.overrides, **options))
    print(f"run folder: {result.run_dir}")
    header = ("epoch", "bn_pearson", "mask_distance", "weight_pearson", "norm_distance_pearson",
              "hg_g_pearson")
    print("  ".join(f"{h:>21}" for h in header))
    for row in result.summary["analysis"]:
        print("  ".join(f"{float(row[h]):>21.4f}" if h != "epoch" else f"{row[h]:>21}"
                        for h in header))
    print(f"figures and data: {result.run_dir / 'analysis'}")
    return 0
