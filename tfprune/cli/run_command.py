"""Commands that run a config into a resumable run folder (``train``, ``prune``)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable


def add_config_arguments(parser, config_required: bool = True) -> None:
    """Adds ``CONFIG`` and the repeatable ``--set SECTION.KEY=VALUE`` override."""
    parser.add_argument("config", nargs=None if config_required else "?",
                        help="YAML config file (see configs/)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=10 (repeatable)",
    )


@dataclasses.dataclass(frozen=True)
class RunCommand:
    """``tfprune NAME CONFIG [--set ...] | --resume RUN_DIR``.

    Attributes:
        name: The subcommand.
        help: One line for ``tfprune --help``.
        description: The subcommand's ``--help`` text.
        runner: ``"module:start_function:resume_function"``, imported on use so
            ``--help`` stays fast.
        report: Extra summary lines ``summary -> str`` printed after the run.
    """

    name: str
    help: str
    description: str
    runner: str
    report: Callable[[dict], str] | None = None

    def add_parser(self, subparsers) -> None:
        """Adds the subcommand."""
        parser = subparsers.add_parser(
            self.name, help=self.help, description=self.description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        add_config_arguments(parser, config_required=False)
        parser.add_argument("--resume", metavar="RUN_DIR",
                            help="continue an interrupted run from its last finished epoch")
        parser.set_defaults(parser=parser)

    def _functions(self):
        import importlib

        module, start, resume = self.runner.split(":")
        module = importlib.import_module(module)
        return getattr(module, start), getattr(module, resume)

    def run(self, args) -> int:
        """Runs (or resumes), prints the summary and returns 0."""
        if bool(args.config) == bool(args.resume):
            args.parser.error("give either CONFIG or --resume RUN_DIR")
        if args.resume and args.overrides:
            args.parser.error("--set cannot change a resumed run; its config.yaml is used as is")
        start, resume = self._functions()
        result = resume(args.resume) if args.resume else start(args.config, args.overrides)
        summary = result.summary
        print(f"run folder: {result.run_dir}")
        if "final_test_accuracy" in summary:  # a language model's run reports perplexity
            print(f"test accuracy: final {summary['final_test_accuracy']:.4f}, "
                  f"best {summary['best_test_accuracy']:.4f} (epoch {summary['best_epoch']}); "
                  f"params {summary['params']:,}")
        if self.report is not None:
            print(self.report(summary))
        return 0


def pruning_report(summary: dict) -> str:
    """Params, FLOPs and filters kept of a prune-and-train run."""
    kept = summary["filters_kept"].values()
    return (f"pruned {summary['fraction_removed']:.1%} of prunable filters "
            f"({sum(k for k, _ in kept):,} of {sum(n for _, n in kept):,} kept); params "
            f"{summary['params_before']:,} -> {summary['params_after']:,}; FLOPs "
            f"{summary['flops_before']:,} -> {summary['flops_after']:,}")


def finetune_report(summary: dict) -> str:
    """A fine-tuning run's lines: pruning and accuracy, or a language model's perplexities."""
    if summary.get("kind") == "causal_lm":
        from tfprune.workflows.lm_finetune import lm_report

        return lm_report(summary)
    return pruning_report(summary)


def pipeline_report(summary: dict) -> str:
    """Pruning, then the deployment half of the summary: slimmed accuracy, exports, latency."""
    lines = [pruning_report(summary), f"slimmed model: {summary['slim_model']}; test accuracy "
             f"{summary['slim_test_accuracy']:.4f} (masked model "
             f"{summary['final_test_accuracy']:.4f})"]
    for export in summary["exports"]:
        check = export["verification"]
        agreement = ("" if check["top1_agreement"] is None
                     else f"; top-1 agreement {check['top1_agreement']:.1%}")
        lines.append(
            f"{export['path']} ({export['quantize']}): {export['size_bytes'] / 1024:,.0f} KB; "
            f"LiteRT accuracy {export['tflite_accuracy']:.4f} on {check['examples']} test "
            f"images; max abs diff {check['max_abs_diff']:.1e}{agreement}: "
            f"{'passed' if export['passed'] else 'FAILED'}")
    lines.append(summary["bench_table"])
    lines.append(f"pipeline time (this session): {summary['pipeline_seconds_this_session']:.0f} s")
    return "\n".join(lines)


TRAIN = RunCommand(
    "train", "train a model from a YAML config with the paper's recipe",
    "Train a model from a YAML config (paper recipe by default) into a run folder; an "
    "interrupted run continues with --resume RUN_DIR.",
    "tfprune.training:train_from_file:resume_run",
)

PRUNE = RunCommand(
    "prune", "prune early in training and train on (the paper's protocol)",
    "From random initialization: each round trains one epoch, then scores, ranks and masks "
    "filters (config section 'prune'); then training continues to train.epochs. Writes the "
    "plans, metrics, TensorBoard summaries and checkpoints to a run folder; an interrupted "
    "run continues with --resume RUN_DIR.",
    "tfprune.workflows.prune_run:prune_from_file:resume_prune", pruning_report,
)

FINETUNE = RunCommand(
    "finetune", "prune a trained model, then fine-tune it (optionally distilled from it)",
    "Load the trained model of finetune.source (a .keras file or a run folder), prune it by "
    "the 'prune' section (round 1 before the first epoch, then one per epoch), fine-tune it "
    "for train.epochs with masks enforced, and with finetune.distill: true learn from the "
    "dense model too (keras.distillation.Distiller, LogitsDistillation). An interrupted run "
    "continues with --resume RUN_DIR. With lm.text set, finetune.source is a saved keras-hub "
    "causal LM: it is pruned (prune.axes: heads, mlp, hidden, depth), slimmed and recovered on "
    "that text by distillation (finetune.distill) or on the labels, reporting held-out "
    "perplexity.",
    "tfprune.workflows.finetune:finetune_from_file:resume_finetune", finetune_report,
)
PIPELINE = RunCommand(
    "pipeline", "prune, train, slim, export to TFLite, verify in LiteRT and time: end to end",
    "The main job: prune-and-train from a config (sections 'prune' and 'deploy'), rebuild the "
    "slimmed model, export it to .tflite for each deploy.quantize, verify every file in the "
    "LiteRT interpreter on test images, and time the dense and slimmed models at batch 1 in "
    "Keras and LiteRT. An interrupted run continues with --resume RUN_DIR.",
    "tfprune.pipeline:pipeline_from_file:resume_pipeline", pipeline_report,
)
