"""``tfprune groups CONFIG``: print the channel groups of a config's model."""

from __future__ import annotations

import argparse

from tfprune.cli.run_command import add_config_arguments


def add_parser(subparsers) -> None:
    """Adds the ``groups`` subcommand."""
    parser = subparsers.add_parser(
        "groups", help="print which channels of a config's model are pruned together",
        description="Build the config's model (CIFAR shapes: 32x32x3, 10 classes; the groups "
                    "do not depend on them) and print its channel groups: size, the layers "
                    "whose scores rank the group, and every member.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_arguments(parser)


def run(args) -> int:
    """Prints one line per group and a total; returns 0."""
    from tfprune.config import load_config
    from tfprune.pruning import channel_groups
    from tfprune.training import model_builder

    config = load_config(args.config, args.overrides)
    section = config["model"]
    builder = model_builder(config)
    model = builder(width_multiplier=section["width_multiplier"], **section["options"])
    groups = channel_groups(model, config["prune"]["ignored_layers"])
    for group in groups:
        split = "" if group.parts * group.atom == 1 else (
            f"  (removed evenly from {group.parts} parts, {group.atom} at a time)")
        print(f"group {group.index:3d}  {group.size:5d} channels  ranked by "
              f"{', '.join(group.sources)}{split}")
        print(f"{'':11}members: {', '.join(group.members)}")
    print(f"{len(groups)} groups, {sum(g.size for g in groups):,} prunable channels "
          f"in model {section['name']!r}")
    return 0
