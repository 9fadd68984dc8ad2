"""Export one model to .tflite, verify it in LiteRT and report what a deployer needs to know."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import keras
import numpy as np

from tfprune.export.model_io import named_outputs, random_inputs
from tfprune.export.tflite import Verification, compare_outputs, export_tflite, run_tflite_for
from tfprune.precision import float32_model
from tfprune.pruning.stats import flops

#: Float exports must match Keras outputs (logits) to this (max abs diff).
FLOAT_TOLERANCE = 1e-3
#: Quantized exports must agree with Keras on the top-1 class this often.
QUANTIZED_AGREEMENT = 0.97
#: Quantized exports of models without class scores (regression only) must match
#: Keras to this fraction of the largest output (max abs diff).
QUANTIZED_RELATIVE_ERROR = 0.05


@dataclasses.dataclass
class ExportReport:
    """The exported file and how it compares with the Keras model.

    Attributes:
        path: The .tflite file.
        quantize: The quantization used.
        size_bytes: File size.
        params: Parameters of the Keras model.
        flops: FLOPs of one forward pass of the Keras model.
        verification: LiteRT against Keras on the verification inputs.
        inputs: What the verification inputs were ("test split" or "random").
        keras_accuracy: Keras top-1 accuracy on them (None without labels).
        tflite_accuracy: LiteRT top-1 accuracy on them (None without labels).
    """

    path: Path
    quantize: str
    size_bytes: int
    params: int
    flops: int
    verification: Verification
    inputs: str
    keras_accuracy: float | None = None
    tflite_accuracy: float | None = None

    @property
    def _classifies(self) -> bool:
        return not np.isnan(self.verification.top1_agreement)

    @property
    def criterion(self) -> str:
        """The check this export must pass."""
        if self.quantize == "none":
            return f"max abs diff of outputs <= {FLOAT_TOLERANCE:g}"
        if self._classifies:
            return f"top-1 agreement >= {QUANTIZED_AGREEMENT:.0%}"
        return f"max abs diff <= {QUANTIZED_RELATIVE_ERROR:.0%} of the largest output"

    @property
    def passed(self) -> bool:
        """Whether the verification meets ``criterion``."""
        check = self.verification
        if self.quantize == "none":
            return check.max_abs_diff <= FLOAT_TOLERANCE
        if self._classifies:
            return check.top1_agreement >= QUANTIZED_AGREEMENT
        return check.max_abs_diff <= QUANTIZED_RELATIVE_ERROR * check.scale

    def as_dict(self) -> dict:
        """JSON-ready fields, with the verification flattened in (NaN written as null)."""
        fields = dataclasses.asdict(self)
        fields["verification"] = {key: None if isinstance(value, float) and np.isnan(value)
                                  else value for key, value in fields["verification"].items()}
        fields.update(path=str(self.path), criterion=self.criterion, passed=self.passed)
        return fields

    def format(self) -> str:
        """A few lines for the terminal."""
        check = self.verification
        agreement = (f", top-1 agreement {check.top1_agreement:.1%}" if self._classifies
                     else f" (largest output {check.scale:.3g})")
        lines = [
            f"{self.path} ({self.quantize}): {self.size_bytes / 1024:,.0f} KB; "
            f"params {self.params:,}; FLOPs {self.flops:,}",
            f"  LiteRT vs Keras on {check.examples} {self.inputs} inputs: max abs diff "
            f"{check.max_abs_diff:.2e}{agreement}",
        ]
        lines += [f"    {name}: max abs diff {diff:.2e}" for name, diff in
                  check.per_output.items()]
        if self.tflite_accuracy is not None:
            lines.append(f"  accuracy: Keras {self.keras_accuracy:.4f}, "
                         f"LiteRT {self.tflite_accuracy:.4f}")
        lines.append(f"  check ({self.criterion}): {'passed' if self.passed else 'FAILED'}")
        return "\n".join(lines)


def export_and_verify(model: keras.Model, path: str | os.PathLike, quantize: str = "none", *,
                      representative_images: np.ndarray | None = None,
                      images: np.ndarray | None = None, labels: np.ndarray | None = None,
                      examples: int = 200) -> ExportReport:
    """Exports ``model`` to ``path`` and checks the file in the LiteRT interpreter.

    Args:
        model: The Keras model (compared in float32, as ``export_tflite`` writes it).
        path: The .tflite file to write.
        quantize: ``none``, ``dynamic``, ``float16`` or ``int8``.
        representative_images: Training images calibrating int8.
        images: Verification inputs (e.g. a test subset); None: ``examples``
            random-normal inputs.
        labels: Their labels, for accuracies.
        examples: How many random inputs when ``images`` is None.
    """
    path = export_tflite(model, path, quantize, representative_images)
    inputs = "test split"
    if images is None:
        images = random_inputs(model, examples)
        inputs, labels = "random", None
    computed = float32_model(model)  # what the file computes (mixed precision: in float32)
    expected = named_outputs(computed, computed.predict(images, verbose=0))
    actual = run_tflite_for(path, model, images)
    verification = compare_outputs(expected, actual)
    report = ExportReport(path=path, quantize=quantize, size_bytes=path.stat().st_size,
                          params=int(model.count_params()), flops=flops(model),
                          verification=verification, inputs=inputs)
    if labels is not None and len(expected) == 1:  # accuracy of a one-output classifier
        labels = np.asarray(labels)
        (keras_scores,), (litert_scores,) = expected.values(), actual.values()
        report.keras_accuracy = float(np.mean(keras_scores.argmax(-1) == labels))
        report.tflite_accuracy = float(np.mean(litert_scores.argmax(-1) == labels))
    return report


def export_file_name(stem: str, quantize: str) -> str:
    """The name of the .tflite file ``export_all`` writes for one quantization."""
    return f"{stem}_{quantize}.tflite"


def export_all(model: keras.Model, output_dir: str | os.PathLike, quantizations, *, data=None,
               stem: str = "model", verify_samples: int = 1000,
               representative_samples: int = 200, progress=print) -> list[ExportReport]:
    """Exports ``model`` once per quantization into ``output_dir`` and verifies each file.

    Args:
        model: The Keras model.
        output_dir: Where ``{stem}_{quantization}.tflite`` files go.
        quantizations: Any of ``none``, ``dynamic``, ``float16``, ``int8``.
        data: A ``DataBundle``: int8 calibrates on its training split and every
            file is verified on its test split. None: random inputs, no int8.
        stem: File-name stem.
        verify_samples: Test images compared (at most the test split's size).
        representative_samples: Training images calibrating int8.
        progress: Called with a line of text before each export (None: silent).

    Raises:
        ValueError: For an unknown quantization, or int8 without data.
    """
    from tfprune.export.tflite import QUANTIZATIONS

    unknown = [q for q in quantizations if q not in QUANTIZATIONS]
    if unknown:
        raise ValueError(f"quantize: {unknown} not in {list(QUANTIZATIONS)}.")
    if "int8" in quantizations and data is None:
        raise ValueError("int8 quantization calibrates on training data: export a run folder "
                         "(its config names the data) or pass data.")
    representative = images = labels = None
    if data is not None:
        representative, _ = data.sample("train", representative_samples, seed=0)
        images, labels = data.sample("test", verify_samples, seed=1)
    reports = []
    for quantize in quantizations:
        if progress:
            progress(f"exporting {stem} ({quantize}) and verifying it in LiteRT ...")
        reports.append(export_and_verify(
            model, Path(output_dir) / export_file_name(stem, quantize), quantize,
            representative_images=representative, images=images, labels=labels,
        ))
    return reports
