"""``tfprune sensitivity CONFIG|RUN_DIR|MODEL``: each channel group pruned alone, evaluated."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: What ``tfprune sensitivity`` writes into its output folder.
SENSITIVITY_FILES = ("sensitivity.csv", "sensitivity.png", "tensorboard", "ratios.json")


def add_parser(subparsers) -> None:
    """Adds the ``sensitivity`` subcommand."""
    parser = subparsers.add_parser(
        "sensitivity", help="prune each channel group alone at a range of ratios and evaluate",
        description="For every channel group in turn, remove its lowest-scored fraction of "
                    "channels (each of --ratios), evaluate the validation loss and accuracy, "
                    "and restore it. Writes sensitivity.csv, sensitivity.png and TensorBoard "
                    "scalars (sensitivity/<layer>/accuracy), prints the table, and with "
                    "--max-drop, --max-loss-increase or --flops / --params writes "
                    "ratios.json: per-layer ratios for make_plan. A model compiled without "
                    "an accuracy metric is ranked by its loss.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", metavar="CONFIG|RUN_DIR|MODEL",
                        help="a config (its model at init, or --checkpoint), a tfprune run "
                             "folder (its final model and data) or a compiled .keras file "
                             "(with --data)")
    parser.add_argument("--checkpoint", metavar="PATH", help="with a CONFIG: a .keras model")
    parser.add_argument("--data", metavar="SOURCE",
                        help="validation data source (default: the config's or run's data)")
    parser.add_argument("--measure", default="magnitude",
                        help="importance measure ranking the channels within each group")
    parser.add_argument("--ratios", type=float, nargs="+",
                        default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                        help="fractions of a group's channels removed")
    parser.add_argument("--samples", type=int, default=1000,
                        help="validation (test split) images evaluated")
    parser.add_argument("--max-drop", type=float, metavar="D",
                        help="derive per-layer ratios: the largest whose accuracy stays within "
                             "D of the unpruned model's")
    parser.add_argument("--max-loss-increase", type=float, metavar="L",
                        help="derive per-layer ratios: the largest whose validation loss stays "
                             "within a fraction L above the unpruned model's (e.g. 0.05)")
    parser.add_argument("--flops", type=float, metavar="F",
                        help="derive per-layer ratios meeting this FLOPs budget")
    parser.add_argument("--params", type=float, metavar="P",
                        help="derive per-layer ratios meeting this parameter budget")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files that tfprune did not write")
    parser.add_argument("--output", metavar="DIR",
                        help="where the files go (default RUN_DIR/sensitivity, or "
                             "./sensitivity)")


def _model_and_data(args):
    """``(model, bundle, default output folder)`` for the source given."""
    from tfprune.config import ConfigError, load_config
    from tfprune.data import load_data
    from tfprune.model_files import load_model_file
    from tfprune.run_folder import RunFolder
    from tfprune.training import build_model, compile_model, data_spec
    from tfprune.workflows.model_sources import run_data

    source = Path(args.source)
    if source.suffix in (".yaml", ".yml"):
        config = load_config(source)
        if args.data:
            config["data"]["source"] = args.data
        bundle = load_data(data_spec(config))
        if args.checkpoint:
            model = load_model_file(args.checkpoint, what="--checkpoint", compile=True)
        else:
            model = build_model(config, bundle)
            compile_model(model, config)
        return model, bundle, Path("sensitivity")
    if source.is_dir():
        run = RunFolder(source)
        run.require_run("evaluate its model")
        return run.load_model(), run_data(source, args.data), run.path / "sensitivity"
    if source.suffix == ".keras" and source.is_file():
        if not args.data:
            raise ConfigError(f"{source}: a bare .keras model needs --data SOURCE to be "
                              "evaluated on.")
        return (load_model_file(source, compile=True), load_data(args.data),
                Path("sensitivity"))
    raise ConfigError(f"{source}: not a config (.yaml), a run folder or a .keras file.")


def _cost(model, scores, ratios: dict, budgets: list) -> float:
    """The FLOPs or parameters of the model pruned by per-layer ratios."""
    import tfprune
    from tfprune.pruning.stats import flops, param_count

    plan = tfprune.make_plan(model, scores, ratios)
    return (flops if "flops" in budgets[0] else param_count)(model, plan)


def run(args) -> int:
    """Builds the table, writes its files, prints it; returns 0."""
    import tfprune
    from tfprune.atomic import write_json
    from tfprune.config import ConfigError
    from tfprune.outputs import OutputFolder
    from tfprune.pruning.sensitivity import layer_sensitivity

    if args.samples < 1:
        raise ConfigError("--samples must be >= 1.")
    budgets = [b for b in ({"flops": args.flops} if args.flops else None,
                           {"params": args.params} if args.params else None) if b]
    limits = (args.max_drop is not None) + (args.max_loss_increase is not None)
    if len(budgets) + limits > 1:
        raise ConfigError("give at most one of --max-drop, --max-loss-increase, --flops and "
                          "--params.")
    if not all(0 < r < 1 for r in args.ratios):
        raise ConfigError(f"--ratios must be in (0, 1), got {args.ratios}.")
    model, bundle, default_output = _model_and_data(args)
    metrics = str((model.get_compile_config() or {}).get("metrics"))
    if args.max_drop is not None and "acc" not in metrics:
        raise ConfigError(f"--max-drop reads the accuracy, and {args.source} is compiled "
                          f"without an accuracy metric (metrics: {metrics}); give "
                          "--max-loss-increase.")
    output = Path(args.output or default_output)
    folder = OutputFolder(output, args.force)
    folder.check(SENSITIVITY_FILES)  # before any work
    needs_data = tfprune.importance.get_measure(args.measure).requires
    scores = tfprune.score(model, args.measure, bundle if needs_data else None,
                           **({"num_samples": 512} if needs_data else {}))
    validation = bundle.sample("test", args.samples)
    table = layer_sensitivity(model, scores, validation, ratios=args.ratios,
                              progress=lambda line: print(line, flush=True))
    metric = table.metric
    accuracy = ("" if metric == "loss"
                else f", accuracy {table.baseline['accuracy']:.4f}")
    print(f"unpruned: loss {table.baseline['loss']:.4f}{accuracy} on {len(validation[1])} "
          f"test images; validation {metric} per ratio:")
    print(f"{'layer':<28} " + " ".join(f"{r:>6.2f}" for r in args.ratios))
    for layer in table.layers:
        values = [row[metric] for row in table.rows if row["layer"] == layer]
        print(f"{layer:<28} " + " ".join(f"{value:>6.3f}" for value in values))
    files = [table.to_csv(output / "sensitivity.csv"), table.figure(output / "sensitivity.png"),
             table.write_tensorboard(output / "tensorboard")]
    if limits or budgets:
        try:
            ratios = table.ratios(max_drop=args.max_drop,
                                  max_loss_increase=args.max_loss_increase,
                                  budget=budgets[0] if budgets else None,
                                  cost_of=lambda r: _cost(model, scores, r, budgets))
        except ValueError as error:
            raise ConfigError(f"tfprune sensitivity: {error}") from None
        path = write_json(output / "ratios.json", ratios)
        files.append(path)
        print("per-layer ratios (make_plan(model, scores, ratios)):",
              json.dumps(ratios))
    folder.record(path.name for path in files)
    print("wrote:", ", ".join(str(f) for f in files))
    return 0
