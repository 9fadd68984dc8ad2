"""Layer sensitivity: each channel group pruned alone at a range of ratios, evaluated.

``layer_sensitivity`` removes, for one group at a time, its lowest-scored
``ratio`` of channels (zeroing them, as ``apply_plan`` does), evaluates the
model on validation data (the compiled loss and accuracy, ``model.evaluate``),
and restores the weights, so the model is left as it was. The table it
returns is written as CSV, a figure (accuracy against ratio, one line per
group) and TensorBoard scalars, and turns into per-layer ratios for
``make_plan``:

- ``table.ratios(max_drop=0.02)``: per group, the largest ratio whose accuracy
  stays within ``max_drop`` of the unpruned model;
- ``table.ratios(max_loss_increase=0.05)``: the same on the validation loss
  (at most 5% above the unpruned model's), for models without an accuracy
  metric (regression) or any other;
- ``table.ratios(budget={"flops": F})``: ratios raised greedily, one table
  step at a time, where the step loses the least accuracy (for a model without
  an accuracy metric: adds the least loss) per FLOP (or parameter) saved,
  until the budget is met.

``make_plan(model, scores, {"layer_name": ratio, ...})`` prunes each named
group by its own ratio.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import keras
import numpy as np

from tfprune.budget_targets import parse_budget
from tfprune.graph.channels import graph_for
from tfprune.pruning.plan import PruningPlan, group_scores
from tfprune.pruning.rounding import even_parts

#: The ratios tried by default.
DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclasses.dataclass
class SensitivityTable:
    """The validation loss and accuracy of the model with one group pruned at a time.

    Attributes:
        baseline: ``{"loss": ..., "accuracy": ...}`` of the unpruned model
            (``accuracy`` is None for a model compiled without an accuracy metric).
        rows: One dict per (group, ratio): ``layer`` (the group's name: its
            first source layer), ``ratio``, ``removed``, ``loss``, ``accuracy``,
            ``flops`` and ``params`` after.
        flops / params: The unpruned model's.
    """

    baseline: dict
    rows: list[dict]
    flops: int
    params: int

    @property
    def layers(self) -> list[str]:
        """The groups' names in model order."""
        return list(dict.fromkeys(row["layer"] for row in self.rows))

    @property
    def metric(self) -> str:
        """What the table ranks steps by: ``accuracy``, or ``loss`` without an accuracy metric."""
        return "loss" if self.baseline.get("accuracy") is None else "accuracy"

    def _quality(self, row: dict) -> float:
        """Higher is better: the accuracy, else minus the loss."""
        return row["accuracy"] if self.metric == "accuracy" else -row["loss"]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Writes the rows (and the baseline as ratio 0) as CSV."""
        from tfprune.atomic import atomic_path

        path = Path(path)
        fields = ["layer", "ratio", "removed", "loss", "accuracy", "flops", "params"]
        with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerow({"layer": "(none)", "ratio": 0, "removed": 0,
                             "flops": self.flops, "params": self.params, **self.baseline})
            writer.writerows(self.rows)
        return path

    def figure(self, path: str | os.PathLike) -> Path:
        """The table's metric against ratio, one line per group, the baseline dashed (PNG)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metric = self.metric
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for layer in self.layers:
            rows = [row for row in self.rows if row["layer"] == layer]
            ax.plot([0] + [r["ratio"] for r in rows],
                    [self.baseline[metric]] + [r[metric] for r in rows],
                    marker="o", markersize=3, label=layer)
        ax.axhline(self.baseline[metric], color="black", linestyle="--", linewidth=1,
                   label="unpruned")
        ax.set_xlabel("fraction of the group's channels removed (this group only)")
        ax.set_ylabel(f"validation {metric}")
        ax.set_title("layer sensitivity")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def write_tensorboard(self, log_dir: str | os.PathLike) -> Path:
        """``sensitivity/<layer>/accuracy`` and ``/loss`` scalars, step = ratio in percent."""
        import tensorflow as tf

        writer = tf.summary.create_file_writer(str(log_dir))
        with writer.as_default():
            for row in self.rows:
                step = int(round(100 * row["ratio"]))
                if row["accuracy"] is not None:
                    tf.summary.scalar(f"sensitivity/{row['layer']}/accuracy", row["accuracy"],
                                      step)
                tf.summary.scalar(f"sensitivity/{row['layer']}/loss", row["loss"], step)
        writer.flush()
        return Path(log_dir)

    def ratios(self, *, max_drop: float | None = None, max_loss_increase: float | None = None,
               budget: dict | None = None, cost_of=None) -> dict:
        """Per-layer ratios for ``make_plan``, from the table.

        Args:
            max_drop: Each group's largest ratio whose accuracy is at least the
                unpruned accuracy minus ``max_drop`` (0 if none is).
            max_loss_increase: Each group's largest ratio whose loss is at most
                the unpruned loss times ``1 + max_loss_increase`` (0 if none is).
            budget: ``{"flops": F}`` or ``{"params": P}``: starting from no
                pruning, repeatedly take the table step (one group to its next
                ratio) that loses the least accuracy (``metric``: without an
                accuracy metric, adds the least loss) per unit of cost saved,
                until the budget is met. The table's savings are each group's
                alone; together they overlap (a layer's FLOPs shrink with its
                input and its output channels), so the sum overstates them:
                give ``cost_of`` to check the real cost.
            cost_of: ``cost_of(ratios) -> cost`` of the model pruned by those
                ratios (e.g. ``flops(model, make_plan(model, scores, ratios))``);
                when the table says the budget is met, steps go on until this
                says so too.

        Raises:
            ValueError: Without exactly one of them, ``max_drop`` for a model
                without an accuracy metric, or a budget the table cannot reach.
        """
        if sum(option is not None for option in (max_drop, max_loss_increase, budget)) != 1:
            raise ValueError("give one of max_drop, max_loss_increase or budget.")
        if max_drop is not None:
            if self.metric != "accuracy":
                raise ValueError("max_drop reads the accuracy, and the model has no accuracy "
                                 "metric: give max_loss_increase (a fraction of the loss).")
            floor = self.baseline["accuracy"] - max_drop
            return self._largest(lambda row: row["accuracy"] >= floor)
        if max_loss_increase is not None:
            ceiling = self.baseline["loss"] * (1 + max_loss_increase)
            return self._largest(lambda row: row["loss"] <= ceiling)
        return self._ratios_for_budget(budget, cost_of)

    def _largest(self, acceptable) -> dict:
        """Per group, the largest ratio of an ``acceptable`` row (0 if none is)."""
        return {layer: max([0.0] + [r["ratio"] for r in self.rows
                                    if r["layer"] == layer and acceptable(r)])
                for layer in self.layers}

    def _ratios_for_budget(self, budget: dict, cost_of) -> dict:
        parsed = parse_budget(budget)
        if parsed.measured:
            raise ValueError("a sensitivity table derives ratios under a flops or params "
                             "budget; measured budgets go to make_plan directly.")
        dense = self.flops if parsed.kind == "flops" else self.params
        steps = {layer: [r for r in self.rows if r["layer"] == layer] for layer in self.layers}
        chosen = dict.fromkeys(self.layers, -1)  # index into steps[layer]; -1: unpruned

        def current() -> dict:
            return {layer: (steps[layer][i]["ratio"] if i >= 0 else 0.0)
                    for layer, i in chosen.items()}

        estimate = float(dense)
        while True:
            if estimate <= parsed.value and (cost_of is None
                                             or cost_of(current()) <= parsed.value):
                return current()
            best = None
            for layer, options in steps.items():
                index = chosen[layer] + 1
                if index >= len(options):
                    continue
                before = options[index - 1] if index else {parsed.kind: dense,
                                                           **self.baseline}
                saved = before[parsed.kind] - options[index][parsed.kind]
                lost = self._quality(before) - self._quality(options[index])
                if saved > 0 and (best is None or lost / saved < best[0]):
                    best = (lost / saved, layer, saved)
            if best is None:
                raise ValueError(f"the table cannot reach {parsed.kind} <= {parsed.value:,.0f} "
                                 "with every group at its largest ratio.")
            chosen[best[1]] += 1
            estimate -= best[2]


def _evaluate(model: keras.Model, data, batch_size: int) -> dict:
    """The compiled loss and the first accuracy metric (None without one)."""
    x, y = data
    values = model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    accuracy = next((v for k, v in values.items() if "acc" in k), None)
    return {"loss": float(values["loss"]),
            "accuracy": None if accuracy is None else float(accuracy)}


def layer_sensitivity(model: keras.Model, scores, data, *, ratios=DEFAULT_RATIOS,
                      min_keep: int = 1, ignored_layers=(), batch_size: int = 256,
                      progress=None) -> SensitivityTable:
    """Prunes each channel group alone at each ratio and evaluates the model.

    Args:
        model: A compiled model (with an accuracy metric, the table also reads it).
        scores: Its filter scores (``tfprune.score``); each group loses its
            lowest-scored channels (a grouped convolution's evenly from its
            parts, GroupNormalization's in whole groups, as a plan would).
        data: Validation ``(x, y)``: NumPy arrays, or a list / dict of them for a
            model with several inputs or outputs.
        ratios: Fractions of each group's channels to remove, in (0, 1).
        min_keep: Channels a group always keeps.
        ignored_layers: Layers the channel analysis leaves alone.
        batch_size: Evaluation batch size.
        progress: Called with a line of text per group.

    Returns:
        A ``SensitivityTable``; the model's weights are restored.
    """
    from tfprune.pruning.masks import apply_plan
    from tfprune.pruning.stats import flops, param_count

    ratios = [float(r) for r in ratios]
    if not ratios or not all(0 < r < 1 for r in ratios):
        raise ValueError(f"ratios must be in (0, 1), got {ratios}.")
    graph = graph_for(model, ignored_layers)
    saved = model.get_weights()
    baseline = _evaluate(model, data, batch_size)
    rows = []
    all_kept = [np.ones(g.size, bool) for g in graph.groups]
    for number, group in enumerate(graph.groups, 1):
        name = group.sources[0] if group.sources else group.members[0]
        if progress:
            progress(f"[{number}/{len(graph.groups)}] {name} ({group.size} channels)")
        values = group_scores(group, scores)
        order = np.argsort(values, kind="stable")
        for ratio in ratios:
            removed = min(int(round(ratio * group.size)), group.size - min_keep)
            keep = np.ones(group.size, bool)
            keep[order[:removed]] = False
            # as a plan would: evenly from a grouped conv's parts, GroupNorm's groups whole
            (keep,) = even_parts([values], [keep], [min_keep], [(group.parts, group.atom)])
            removed = int((~keep).sum())
            plan = PruningPlan.from_groups(
                graph.groups, [keep if g is group else k for g, k in zip(
                    graph.groups, all_kept, strict=True)],
                settings={"ignored_layers": sorted(graph.ignored_layers)})
            try:
                apply_plan(model, plan)
                rows.append({"layer": name, "ratio": ratio, "removed": removed,
                             **_evaluate(model, data, batch_size),
                             "flops": flops(model, plan), "params": param_count(model, plan)})
            finally:
                model.set_weights(saved)
    return SensitivityTable(baseline, rows, flops(model), param_count(model))
