"""Export to TFLite / LiteRT (optionally quantized) and verification in the LiteRT interpreter."""

from tfprune.export.tflite import (
    QUANTIZATIONS,
    Verification,
    export_tflite,
    run_tflite,
    verify_tflite,
)

__all__ = ["QUANTIZATIONS", "Verification", "export_tflite", "run_tflite", "verify_tflite"]
