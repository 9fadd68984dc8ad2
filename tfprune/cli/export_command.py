"""``tfprune export RUN_DIR|MODEL``: .tflite files verified in the LiteRT interpreter."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    """Adds the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export", help="export a run's (slimmed) model or a .keras file to TFLite / LiteRT",
        description="Export to .tflite, run each file in the LiteRT interpreter against Keras "
                    "and print file size, params, FLOPs and the agreement. A prune run folder "
                    "exports its slimmed model (made on first use), calibrates int8 on its "
                    "training data and verifies on its test data. Exits with 1 when a check "
                    "fails (float: max abs diff <= 1e-3; quantized: top-1 agreement >= 97%).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", metavar="RUN_DIR|MODEL",
                        help="a tfprune run folder or a .keras file")
    parser.add_argument("--format", default="tflite", choices=["tflite"],
                        help="the export format")
    parser.add_argument("--quantize", nargs="+", default=["none"],
                        choices=["none", "dynamic", "float16", "int8"],
                        help="one file per choice")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where the files go (default RUN_DIR/export, or MODEL_export/ "
                             "beside MODEL)")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files in the output folder that tfprune did "
                             "not write")
    parser.add_argument("--data", metavar="SOURCE",
                        help="data for calibration and verification (default: the run's data; "
                             "a bare MODEL without it is verified on random inputs)")
    parser.add_argument("--verify-samples", type=int, default=1000,
                        help="test images compared in LiteRT and Keras")
    parser.add_argument("--representative-samples", type=int, default=200,
                        help="training images calibrating int8")


def run(args) -> int:
    """Exports, verifies, prints and writes export.json; 1 if a check failed."""
    from tfprune.atomic import write_json
    from tfprune.config import ConfigError
    from tfprune.data import load_data
    from tfprune.export.deploy import export_all, export_file_name
    from tfprune.outputs import OutputFolder
    from tfprune.workflows.model_sources import deployable_source, run_data

    for name in ("verify_samples", "representative_samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1.")
    source = deployable_source(args.source)
    if source.run_dir is not None:
        data = run_data(source.run_dir, args.data)
        output_dir = Path(args.output_dir or source.run_dir / "export")
    else:
        data = load_data(args.data) if args.data else None
        output_dir = Path(args.output_dir or
                          source.path.with_name(f"{source.path.stem}_export"))
    folder = OutputFolder(output_dir, args.force)
    names = [export_file_name(source.path.stem, quantize) for quantize in args.quantize]
    folder.check([*names, "export.json"])  # before any work
    if "int8" in args.quantize and data is None:
        raise ConfigError(f"{source.path}: int8 calibrates on training data; pass --data SOURCE.")
    model = source.load()
    reports = export_all(model, output_dir, args.quantize, data=data,
                         stem=source.path.stem, verify_samples=args.verify_samples,
                         representative_samples=args.representative_samples)
    for report in reports:
        print(report.format())
    write_json(output_dir / "export.json", [report.as_dict() for report in reports], indent=2)
    folder.record([*names, "export.json"])
    failed = [report.quantize for report in reports if not report.passed]
    if failed:
        print(f"tfprune export: verification failed for {failed}", flush=True)
        return 1
    return 0
