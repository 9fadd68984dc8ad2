"""Side-by-side latency of several models: Keras and LiteRT (1 and 2 threads), batch 1.

Each model is exported to a float .tflite file in a scratch folder, then timed
in Keras and in the LiteRT interpreter. Ratios are taken against the first
model (usually the dense one), so the FLOPs reduction sits beside the speedup.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import keras

from tfprune.export.latency import keras_latency, litert_latency
from tfprune.export.tflite import export_tflite
from tfprune.pruning.stats import flops


@dataclasses.dataclass
class BenchRow:
    """One model's size, cost and latencies.

    Attributes:
        label: What the model is (a path or "dense" / "slim").
        params: ``model.count_params()``.
        flops: FLOPs of one forward pass (2 per multiply-accumulate).
        tflite_bytes: Size of the float .tflite file.
        keras_ms: Median batch-1 latency in Keras.
        litert_ms: Median batch-1 latency in LiteRT, keyed by thread count.
    """

    label: str
    params: int
    flops: int
    tflite_bytes: int
    keras_ms: float
    litert_ms: dict[int, float]


def bench_models(models: list[tuple[str, keras.Model]], threads=(1, 2), repeats: int = 50,
                 warmup: int = 5, progress=print,
                 tflite_files: dict[str, Path] | None = None) -> list[BenchRow]:
    """Times every ``(label, model)`` pair; see the module docstring.

    Args:
        models: Labels and models; ratios are against the first.
        threads: LiteRT interpreter thread counts to time.
        repeats: Timed runs per measurement (the median is kept).
        warmup: Untimed runs first.
        progress: Called with a line of text before each model (None: silent).
        tflite_files: ``{label: .tflite file}`` already exported from those models
            (float, as ``export_tflite`` writes them): timed as they are instead of
            converting the model again.
    """
    if not models:
        raise ValueError("bench_models needs at least one model.")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, (label, model) in enumerate(models):
            if progress:
                progress(f"[{index + 1}/{len(models)}] timing {label} ...")
            path = (tflite_files or {}).get(label) or export_tflite(
                model, Path(scratch) / f"model_{index}.tflite")
            rows.append(BenchRow(
                label=label, params=int(model.count_params()), flops=flops(model),
                tflite_bytes=path.stat().st_size,
                keras_ms=keras_latency(model, repeats, warmup).median_ms,
                litert_ms={n: litert_latency(path, n, repeats, warmup).median_ms
                           for n in threads},
            ))
    return rows


def speedups(rows: list[BenchRow]) -> list[dict]:
    """Per row, ratios against the first: FLOPs reduction and latency speedups."""
    base = rows[0]
    return [{
        "label": row.label,
        "flops_reduction": base.flops / row.flops,
        "params_reduction": base.params / row.params,
        "size_reduction": base.tflite_bytes / row.tflite_bytes,
        "keras_speedup": base.keras_ms / row.keras_ms,
        "litert_speedup": {n: base.litert_ms[n] / ms for n, ms in row.litert_ms.items()},
    } for row in rows]


def format_bench(rows: list[BenchRow]) -> str:
    """A plain-text table: costs, latencies, then each ratio against the first row."""
    threads = list(rows[0].litert_ms)
    width = max(12, *(len(row.label) for row in rows))
    litert_heads = "".join(f"  {f'LiteRT {n}t ms':>13}" for n in threads)
    lines = [f"{'model':<{width}}  {'params':>11}  {'MFLOPs':>9}  {'tflite KB':>9}  "
             f"{'Keras ms':>9}{litert_heads}"]
    for row in rows:
        litert = "".join(f"  {row.litert_ms[n]:>13.2f}" for n in threads)
        lines.append(f"{row.label:<{width}}  {row.params:>11,}  {row.flops / 1e6:>9.1f}  "
                     f"{row.tflite_bytes / 1024:>9.0f}  {row.keras_ms:>9.2f}{litert}")
    if len(rows) > 1:
        lines.append(f"ratios against {rows[0].label}:")
        for ratio in speedups(rows)[1:]:
            litert = ", ".join(f"LiteRT {n}t {value:.2f}x"
                               for n, value in ratio["litert_speedup"].items())
            lines.append(f"  {ratio['label']}: FLOPs reduction {ratio['flops_reduction']:.2f}x; "
                         f"speedup Keras {ratio['keras_speedup']:.2f}x, {litert}; "
                         f"params {ratio['params_reduction']:.2f}x, "
                         f".tflite size {ratio['size_reduction']:.2f}x")
    return "\n".join(lines)
