"""TFLite / LiteRT export with optional quantization, verified in the LiteRT interpreter."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


@dataclasses.dataclass
class Verification:
    """How a .tflite file's outputs compare with the Keras model's on the same inputs.

    Attributes:
        max_abs_diff: Largest absolute difference of the logits.
        top1_agreement: Fraction of inputs with the same arg-max class.
        examples: How many inputs were compared.
    """

    max_abs_diff: float
    top1_agreement: float
    examples: int


def export_tflite(model: keras.Model, path: str | os.PathLike, quantize: str = "none",
                  representative_images: np.ndarray | None = None) -> Path:
    """Writes ``model`` as a .tflite file.

    Args:
        model: A Keras model (inputs and outputs stay float32).
        path: The .tflite file to write.
        quantize: ``"none"`` (``model.export(format="litert")``), ``"dynamic"``
            (int8 weights), ``"float16"`` (float16 weights) or ``"int8"`` (int8
            weights and activations, calibrated on ``representative_images``).
        representative_images: Training images for int8 calibration (about 100).

    Returns:
        The written path.

    Raises:
        ValueError: For an unknown quantization or int8 without images.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}.")
    if quantize == "int8" and representative_images is None:
        raise ValueError("int8 quantization needs representative_images (training data).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if quantize == "none":
        model.export(str(path), format="litert", verbose=False)
        return path
    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            images = np.asarray(representative_images, np.float32)
            converter.representative_dataset = lambda: ([image[None]] for image in images)
        path.write_bytes(converter.convert())
    return path


def run_tflite(path: str | os.PathLike, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Runs a .tflite file in the LiteRT interpreter, one input (image, token ids) at a time."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    outputs = []
    for image in np.asarray(images).astype(source["dtype"]):
        interpreter.set_tensor(source["index"], image[None])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"])[0].copy())
    return np.stack(outputs)


def compare_outputs(expected: np.ndarray, actual: np.ndarray) -> Verification:
    """Compares Keras logits (``expected``) with LiteRT's (``actual``) for the same inputs."""
    return Verification(
        max_abs_diff=float(np.max(np.abs(actual - expected))),
        top1_agreement=float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
        examples=len(expected),
    )


def verify_tflite(path: str | os.PathLike, model: keras.Model, images: np.ndarray) -> Verification:
    """Compares the .tflite file's logits with the Keras model's (inference mode)."""
    expected = np.asarray(model.predict(np.asarray(images, np.float32), verbose=0))
    return compare_outputs(expected, run_tflite(path, images))
