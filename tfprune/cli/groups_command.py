"""``tfprune groups CONFIG|MODEL``: print the channel groups of a model, and what is kept whole."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    """Adds the ``groups`` subcommand."""
    parser = subparsers.add_parser(
        "groups", help="print which channels of a model are pruned together",
        description="Print a model's channel groups (size, the layers whose scores rank the "
                    "group, every member), then the channels that are kept whole and why. "
                    "CONFIG builds the config's model (CIFAR shapes: 32x32x3, 10 classes; the "
                    "groups do not depend on them); MODEL is a .keras file (loaded in Keras' "
                    "safe mode, without its optimizer), the first thing to run on your own "
                    "model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("source", metavar="CONFIG|MODEL",
                        help="a YAML config (see configs/) or a .keras model file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="with a CONFIG: override a config value (repeatable)")
    parser.add_argument("--ignore", nargs="+", default=[], metavar="LAYER",
                        help="layers to leave alone (their channels are kept whole), added to "
                             "a config's prune.ignored_layers")
    parser.add_argument("--gqa", choices=["groups", "heads"], default=None,
                        help="how grouped-query attention loses heads: whole query groups, or "
                             "query heads evenly from every group (default: a config's "
                             "prune.gqa, else groups)")


def _model(args):
    """``(model, ignored layers, GQA mode, label)`` for a config or a .keras file."""
    from tfprune.config import ConfigError, load_config
    from tfprune.model_files import load_model_file
    from tfprune.training import model_builder

    source = Path(args.source)
    if source.suffix == ".keras":
        if not source.is_file():
            raise ConfigError(f"{source}: no such .keras file.")
        if args.overrides:
            raise ConfigError("--set applies to a CONFIG, not to a .keras model.")
        return load_model_file(source), list(args.ignore), args.gqa or "groups", source.name
    config = load_config(source, args.overrides)
    section = config["model"]
    model = model_builder(config)(width_multiplier=section["width_multiplier"],
                                  **section["options"])
    ignored = [*config["prune"]["ignored_layers"], *args.ignore]
    return model, ignored, args.gqa or config["prune"]["gqa"], repr(section["name"])


def run(args) -> int:
    """Prints one line per group, the channels kept whole, and a total; returns 0."""
    from tfprune.graph.channels import graph_for

    model, ignored, gqa, label = _model(args)
    graph = graph_for(model, ignored, gqa)
    for group in graph.groups:
        split = "" if group.parts * group.atom == 1 else (
            f"  (removed evenly from {group.parts} parts, {group.atom} at a time)")
        print(f"group {group.index:3d}  {group.size:5d} channels  ranked by "
              f"{', '.join(group.sources)}{split}")
        print(f"{'':11}members: {', '.join(group.members)}")
    kept = graph.kept_whole()
    if kept or ignored:
        print("kept whole:")
        for sources, size, reason in kept:
            print(f"  {', '.join(sources)} ({size} channels): {reason}")
        if ignored:
            print(f"  {', '.join(ignored)}: ignored (their channels and those they touch)")
    groups = graph.groups
    print(f"{len(groups)} groups, {sum(g.size for g in groups):,} prunable channels "
          f"in model {label}")
    return 0
