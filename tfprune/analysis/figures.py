"""PNG figures of the analyses, drawn with matplotlib's object API (no global pyplot state)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure


def _save(figure: Figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")  # keeps legends placed outside


def _legend_outside(axes) -> None:
    """The legend right of the plot, so long run labels neither cover lines nor get cut."""
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _series(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    epochs = np.array([float(row["epoch"]) for row in rows])
    values = np.array([float(row[key]) for row in rows])
    finite = np.isfinite(values)
    return epochs[finite], values[finite]


def plot_dynamics(rows: list[dict], path) -> None:
    """Fig. 2 / 31 / Section 4.1: correlations per epoch, mask distance on a second axis."""
    figure = Figure(figsize=(13, 3.8))
    left, middle, right = figure.subplots(1, 3)
    for key, label in (("bn_pearson", "Pearson"), ("bn_spearman", "Spearman")):
        left.plot(*_series(rows, key), marker="o", label=label)
    left.set(title="|σΔσ| vs |σ g_σ| (BN scales)", xlabel="epoch", ylabel="correlation")
    twin = left.twinx()
    twin.plot(*_series(rows, "mask_distance"), color="gray", linestyle="--", marker="x",
              label="mask distance")
    twin.set_ylabel("early-bird mask distance (20%)")
    left.legend(loc="lower left")
    twin.legend(loc="upper right")
    for key, label in (("weight_pearson", "Pearson"), ("weight_spearman", "Spearman")):
        middle.plot(*_series(rows, key), marker="o", label=label)
    middle.set(title="|θΔθ| vs |θ g| (weights)", xlabel="epoch", ylabel="correlation")
    middle.legend()
    for key, label in (("norm_distance_pearson", "all filters"),
                       ("norm_distance_layer_mean", "mean over layers")):
        right.plot(*_series(rows, key), marker="o", label=label)
    right.set(title="filter L2 norm vs distance from init", xlabel="epoch",
              ylabel="Pearson correlation")
    right.legend()
    _save(figure, path)


def plot_hg_scatter(theta_g: np.ndarray, theta_hg: np.ndarray, epoch: int, pearson: float,
                    path) -> None:
    """Fig. 3: Theta_p^T H g against Theta_p^T g, one point per filter."""
    figure = Figure(figsize=(4.5, 4))
    axes = figure.subplots()
    axes.scatter(theta_g, theta_hg, s=6, alpha=0.6)
    axes.set(title=f"epoch {epoch}: Pearson {pearson:.3f}", xlabel="Θpᵀ g", ylabel="Θpᵀ H g")
    _save(figure, path)


def plot_lines(series: dict[str, tuple], title: str, xlabel: str, ylabel: str, path,
               log: bool = False) -> None:
    """One line per label: ``{label: (x, y)}`` (layer-wise gradient norms, accuracy curves)."""
    figure = Figure(figsize=(7, 4.2))
    axes = figure.subplots()
    colours = [f"C{i % 10}" for i in range(len(series))]
    for (label, (x, y)), colour in zip(series.items(), colours, strict=True):
        axes.plot(x, y, label=label, color=colour)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if log:
        axes.set_yscale("log")
    if len(series) <= 20:
        _legend_outside(axes)
    _save(figure, path)


def plot_layer_ratios(ratios: dict[str, dict[str, float]], path) -> None:
    """Figs. 16-20: the fraction of each layer's filters pruned, one bar group per label."""
    layers = list(dict.fromkeys(layer for values in ratios.values() for layer in values))
    figure = Figure(figsize=(max(6, 0.45 * len(layers) * max(1, len(ratios)) ** 0.5), 4.2))
    axes = figure.subplots()
    width = 0.8 / max(1, len(ratios))
    positions = np.arange(len(layers))
    for index, (label, values) in enumerate(ratios.items()):
        axes.bar(positions + index * width, [values.get(layer, np.nan) for layer in layers],
                 width, label=label)
    axes.set_xticks(positions + 0.4 - width / 2, layers, rotation=90, fontsize=7)
    axes.set(ylabel="fraction of filters pruned", ylim=(0, 1), title="layer-wise pruning ratios")
    _legend_outside(axes)
    _save(figure, path)
