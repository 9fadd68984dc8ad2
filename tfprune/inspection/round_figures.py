"""Labelled per-round figures for TensorBoard: kept fractions, mask maps, score distributions.

Each function returns a batch of RGB images (``uint8``, shape ``(pages, H, W, 3)``)
for ``tf.summary.image``: models with many prunable layers (keras.applications
have 50-150) are split into pages of at most ``rows_per_page`` layers, every
page the same size, so each stays legible. Figures are drawn with matplotlib's
object API (no pyplot state) on the Agg canvas.
"""

from __future__ import annotations

import io

import numpy as np

#: Kept, removed in an earlier round, removed this round (colour-blind safe).
KEPT, REMOVED_BEFORE, REMOVED_NOW = "#4477aa", "#bbbbbb", "#ee6677"


def _pages(items: list, rows_per_page: int) -> tuple[list[list], int]:
    """The pages, and the rows each has room for (all pages of one model alike)."""
    pages = [items[i:i + rows_per_page] for i in range(0, len(items), rows_per_page)] or [[]]
    return pages, rows_per_page if len(pages) > 1 else max(len(items), 1)


def _render(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    from PIL import Image

    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _figure(rows: int, width: float = 9.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, 1.2 + 0.28 * max(rows, 1)), layout="constrained")


def kept_fraction_figure(kept: dict, target: float, epoch: int,
                         rows_per_page: int = 40) -> np.ndarray:
    """One bar per layer (model order, labelled) of its kept fraction, the target as a line.

    Args:
        kept: ``{layer: [kept, original]}`` (``PruningPlan.kept_per_layer``).
        target: The fraction of channels removed this round asks for.
        epoch: For the title.
        rows_per_page: Layers per image.
    """
    images = []
    pages, rows = _pages(list(kept.items()), rows_per_page)
    for number, page in enumerate(pages, 1):
        figure = _figure(rows)
        axes = figure.add_subplot()
        names = [name for name, _ in page][::-1]
        fractions = [left / total for _, (left, total) in page][::-1]
        axes.barh(names, fractions, color=KEPT)
        for y, (fraction, (_, (left, total))) in enumerate(zip(fractions, page[::-1],
                                                              strict=True)):
            axes.text(min(fraction + 0.01, 0.9), y, f"{left}/{total}", va="center", fontsize=7)
        axes.axvline(1 - target, color=REMOVED_NOW, linestyle="--",
                     label=f"kept overall if on target: {1 - target:.0%}")
        axes.set_xlim(0, 1)
        axes.set_ylim(-0.5, rows - 0.5)
        axes.set_xlabel("fraction of channels kept")
        axes.tick_params(axis="y", labelsize=7)
        axes.legend(loc="lower right", fontsize=7)
        axes.set_title(f"epoch {epoch}: channels kept per layer (page {number}/{len(pages)})",
                       fontsize=9)
        images.append(_render(figure))
    return np.stack(images)


def mask_figure(groups: list[dict], keep: dict, previous: dict | None, epoch: int,
                rows_per_page: int = 40) -> np.ndarray:
    """A mask map: a row per channel group (named by its first source), channels across.

    Kept channels, channels removed in earlier rounds and channels removed this
    round get three colours. Each row is scaled to the widest group.
    """
    from matplotlib.colors import ListedColormap

    colours = ListedColormap(["white", KEPT, REMOVED_BEFORE, REMOVED_NOW])
    width = max((g["size"] for g in groups), default=1)
    images = []
    pages, rows = _pages(groups, rows_per_page)
    for number, page in enumerate(pages, 1):
        grid = np.zeros((rows, width))
        for row, group in enumerate(page):
            mask = keep[str(group["index"])]
            before = previous.get(str(group["index"])) if previous else None
            states = np.where(mask, 1, 3)
            if before is not None:
                states = np.where(~mask & ~before, 2, states)
            grid[row, :mask.size] = states
        figure = _figure(rows, width=10.0)
        axes = figure.add_subplot()
        axes.imshow(grid, aspect="auto", cmap=colours, vmin=0, vmax=3, interpolation="nearest")
        labels = [g["sources"][0] + (f" (+{len(g['sources']) - 1})" if len(g["sources"]) > 1
                                     else "") for g in page]
        axes.set_yticks(range(len(page)), labels, fontsize=7)
        axes.set_xlabel("channel")
        axes.set_title(f"epoch {epoch}: masks (blue kept, grey removed before, red removed "
                       f"now; page {number}/{len(pages)})", fontsize=9)
        images.append(_render(figure))
    return np.stack(images)


def scores_figure(scores: dict, epoch: int, rows_per_page: int = 40) -> np.ndarray:
    """Per-layer score distributions (box plots) on one axis, log-scaled when they span decades."""
    images = []
    items = [(name, np.ravel(np.asarray(values, np.float64))) for name, values in
             scores.items()]
    pages, rows = _pages(items, rows_per_page)
    positive = np.concatenate([v[v > 0] for _, v in items] or [np.zeros(0)])
    log = positive.size > 0 and (np.all(np.concatenate([v for _, v in items]) > 0)
                                 and positive.max() / positive.min() > 100)
    for number, page in enumerate(pages, 1):
        figure = _figure(rows)
        axes = figure.add_subplot()
        names = [name for name, _ in page][::-1]
        axes.boxplot([values for _, values in page][::-1], orientation="horizontal",
                     tick_labels=names, showfliers=False)
        if log:
            axes.set_xscale("log")
        axes.set_ylim(0.5, rows + 0.5)
        axes.tick_params(axis="y", labelsize=7)
        axes.set_xlabel("score" + (" (log scale)" if log else ""))
        axes.set_title(f"epoch {epoch}: score distribution per layer (page {number}/"
                       f"{len(pages)})", fontsize=9)
        images.append(_render(figure))
    return np.stack(images)


def summary_markdown(kept: dict, scores: dict, table: dict | None) -> str:
    """A Markdown table, a row per layer, for TensorBoard's Text dashboard.

    Columns: channels before and after, score min / median / max, and params
    and FLOPs after when ``table`` (``tfprune.pruning.stats.layer_table``) is given.
    """
    head = "| layer | channels | kept | score min | median | max |"
    rule = "| --- | --- | --- | --- | --- | --- |"
    if table is not None:
        head, rule = head + " params after | FLOPs after |", rule + " --- | --- |"
    lines = [head, rule]
    for name, (left, total) in kept.items():
        values = np.ravel(np.asarray(scores.get(name, [np.nan]), np.float64))
        row = (f"| {name} | {total} | {left} | {np.min(values):.3g} | {np.median(values):.3g} "
               f"| {np.max(values):.3g} |")
        if table is not None and name in table:
            row += f" {table[name]['params'][0]:,} | {table[name]['flops'][0]:,} |"
        elif table is not None:
            row += " | |"
        lines.append(row)
    return "\n".join(lines)
