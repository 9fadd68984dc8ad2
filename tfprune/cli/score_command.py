"""``tfprune score CONFIG --measure NAME [--checkpoint PATH]``: score and save importance."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfprune.cli.run_command import add_config_arguments


def add_parser(subparsers) -> None:
    """Adds the ``score`` subcommand."""
    parser = subparsers.add_parser(
        "score", help="score every prunable filter (or weight) with an importance measure",
        description="Score a config's model (at initialization, or a checkpoint) with an "
                    "importance measure on the config's training data; print per-layer "
                    "summaries and save the scores as .npz + .json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--measure", required=True,
                        help="importance measure, e.g. magnitude, snip, proposed, grasp")
    parser.add_argument("--checkpoint", metavar="PATH",
                        help="a .keras model to score (default: the config's model at init)")
    parser.add_argument("--granularity", choices=("filter", "weight"), default="filter")
    parser.add_argument(
        "--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
        help="measure or sampling option, e.g. temperature=200, num_samples=2560, "
             "samples_per_class=10, seed=1 (repeatable)",
    )
    parser.add_argument("--initial-weights", metavar="PATH",
                        help="weights at initialization (.weights.h5/.keras) for distance-from-"
                             "init measures; default: the checkpoint's run folder's")
    parser.add_argument("--force", action="store_true",
                        help="replace existing files that tfprune did not write")
    parser.add_argument("--output", metavar="PATH",
                        help="where to save (default: RUN_DIR/scores/MEASURE-GRANULARITY)")


def _options(texts: list[str]) -> dict:
    from tfprune.config import parse_key_value

    return dict(parse_key_value(text, "--option") for text in texts)


def _resolve_measure(args, config):
    """The measure and context options, validated before any data is loaded."""
    from tfprune.config import ConfigError
    from tfprune.importance.api import split_options
    from tfprune.importance.measure_registry import training_measure

    try:
        measure_options, context_options = split_options(args.measure, _options(args.options))
        measure = training_measure(args.measure, measure_options,
                                   config["train"]["temperature"], config["train"]["seed"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"--measure {args.measure}: {error}") from None
    return measure, context_options


def _run_dir_of(checkpoint: Path) -> Path | None:
    from tfprune.run_folder import RunFolder

    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if RunFolder(folder).is_run:
            return folder
    return None


def _initial_weights(args, checkpoint: Path | None, model):
    from tfprune.run_folder import RunFolder

    if args.initial_weights:
        return args.initial_weights
    if checkpoint is None:
        return model
    run_dir = _run_dir_of(checkpoint)
    if run_dir is not None and RunFolder(run_dir).initial_weights.is_file():
        return str(RunFolder(run_dir).initial_weights)
    return None


def run(args) -> int:
    """Scores, prints a per-layer summary and the output path; returns 0."""
    from tfprune.config import ConfigError, load_config
    from tfprune.data import load_data
    from tfprune.importance import ScoringContext
    from tfprune.model_files import load_model_file
    from tfprune.outputs import refuse_overwrite
    from tfprune.run_folder import RunFolder
    from tfprune.storage import stem
    from tfprune.training import build_model, data_spec, run_folder

    config = load_config(args.config, args.overrides)
    measure, context_options = _resolve_measure(args, config)
    if args.output:  # before any work
        for suffix in (".npz", ".json"):
            refuse_overwrite(stem(args.output).with_suffix(suffix), args.force)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None and not checkpoint.is_file():
        raise ConfigError(f"--checkpoint {checkpoint}: no such file.")
    data = load_data(data_spec(config))
    model = (load_model_file(checkpoint, what="--checkpoint") if checkpoint
             else build_model(config, data))
    context_options.setdefault("initial_weights", _initial_weights(args, checkpoint, model))
    context_options.setdefault("seed", config["train"]["seed"])
    context = ScoringContext(model, data, **context_options)
    scores = measure.score(context, args.granularity)
    print(scores.summary())
    run_dir = (_run_dir_of(checkpoint) if checkpoint else None) or run_folder(config)
    output = args.output or RunFolder(run_dir).scores / f"{measure.name}-{args.granularity}"
    print(f"saved: {scores.save(output)} ({scores.metadata['seconds']} s)")
    return 0
