"""Export to TFLite / LiteRT, verification in LiteRT, and batch-1 latency.

Files can be quantized (dynamic, float16, int8); every export is checked in
the LiteRT interpreter against Keras.
"""

from tfprune.export.bench import BenchRow, bench_models, format_bench, speedups
from tfprune.export.deploy import ExportReport, export_all, export_and_verify
from tfprune.export.latency import Latency, keras_latency, litert_latency
from tfprune.export.tflite import (
    QUANTIZATIONS,
    Verification,
    compare_outputs,
    export_tflite,
    run_tflite,
    run_tflite_for,
    verify_tflite,
)

__all__ = [
    "QUANTIZATIONS", "BenchRow", "ExportReport", "Latency", "Verification", "bench_models",
    "compare_outputs", "export_all", "export_and_verify", "export_tflite", "format_bench",
    "keras_latency", "litert_latency", "run_tflite", "run_tflite_for", "speedups",
    "verify_tflite",
]
