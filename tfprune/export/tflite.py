"""TFLite / LiteRT export with optional quantization, verified in the LiteRT interpreter."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfprune.atomic import atomic_path, write_bytes
from tfprune.precision import float32_model

QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


class LiteRTError(RuntimeError):
    """A .tflite file the LiteRT interpreter cannot run; the message says why and what to do.

    Attributes:
        reason: The message without the file's path.
    """

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def litert_interpreter(path: str | os.PathLike, threads: int = 1):
    """The LiteRT interpreter of a .tflite file, its tensors allocated.

    Raises:
        LiteRTError: When the file needs ops the interpreter lacks: TensorFlow
            (Flex) ops, which Keras' LSTM, GRU, SimpleRNN and ConvLSTM loops
            export as unless built with ``unroll=True``.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    with flex_errors_named(path):
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def flex_errors_named(path: str | os.PathLike):
    """Turns the interpreter's error for TensorFlow (Flex) ops into a ``LiteRTError``.

    The interpreter raises it when tensors are allocated (recurrent loops) or
    when the model first runs (string ops of text preprocessing layers).
    """
    try:
        yield
    except RuntimeError as error:
        flex = re.findall(r"\((Flex\w+)\)", str(error))
        if not flex and "Select TensorFlow op" not in str(error):
            raise
        ops = f" ({', '.join(sorted(set(flex)))})" if flex else ""
        raise LiteRTError(path,
            f"the file needs TensorFlow (Flex) ops{ops} that the LiteRT interpreter "
            "(ai-edge-litert) does not include, so it cannot run here or on a device without "
            "the Flex delegate. Keras' recurrent layers (LSTM, GRU, SimpleRNN, ConvLSTM) "
            "export their loops as such ops: build them with unroll=True (a fixed sequence "
            "length) to get builtin ops. Text preprocessing (TextVectorization, StringLookup "
            "on strings) exports string ops: keep it outside the exported model and export "
            "the model from token ids. A budget of FLOPs or parameters needs no LiteRT "
            "run.") from None


#: What TensorFlow says when a layer's call cannot run in a graph (Python control flow on
#: tensors): keras-hub 0.32's Qwen3.5 gated delta net and RWKV-7 time mix.
_NOT_IN_A_GRAPH = ("symbolic `tf.Tensor` as a Python `bool`",
                   "'SymbolicTensor' object cannot be interpreted")


@contextlib.contextmanager
def graph_errors_named(path: str | os.PathLike):
    """Turns a call that cannot run in a TensorFlow graph into a ``LiteRTError``.

    Export traces the model into a graph; a layer whose ``call`` branches in
    Python on a tensor's value cannot be traced, and TensorFlow's error names
    neither the export nor what to do.
    """
    try:
        yield
    except (tf.errors.OperatorNotAllowedInGraphError, TypeError) as error:
        text = str(error)
        if not any(phrase in text for phrase in _NOT_IN_A_GRAPH):
            raise
        layer = re.search(r"calling (\w+)\.call\(\)", text)
        where = f" {layer.group(1)}'s call" if layer else " a layer's call"
        raise LiteRTError(path,
            f"the model cannot be traced into a TensorFlow graph, which LiteRT export needs:"
            f"{where} uses a tensor's value as a Python value ({type(error).__name__}). It "
            "still prunes, slims and trains (eagerly, or with model.compile("
            "run_eagerly=True)); to export it, that layer's call must use keras.ops "
            "(ops.cond, ops.where) instead of Python branches.") from None


@dataclasses.dataclass
class Verification:
    """How a .tflite file's outputs compare with the Keras model's on the same inputs.

    Attributes:
        max_abs_diff: Largest absolute difference of the outputs (logits), over
            every output.
        top1_agreement: Fraction of inputs with the same arg-max class (the lowest
            over the class-score outputs); NaN for a model without any.
        examples: How many inputs were compared.
        per_output: ``{output name: max abs diff}`` for a model with several
            outputs (empty for one).
        scale: The largest absolute Keras output (what ``max_abs_diff`` is
            relative to).
    """

    max_abs_diff: float
    top1_agreement: float
    examples: int
    per_output: dict = dataclasses.field(default_factory=dict)
    scale: float = float("nan")


def export_tflite(model: keras.Model, path: str | os.PathLike, quantize: str = "none",
                  representative_images: np.ndarray | None = None) -> Path:
    """Writes ``model`` as a .tflite file.

    Args:
        model: A Keras model (inputs and outputs stay float32). One computing in
            half precision (mixed precision) is written as its float32 copy
            (``tfprune.precision.float32_model``): LiteRT's builtin kernels
            lack bfloat16 convolutions; ``quantize="float16"`` halves the weights.
        path: The .tflite file to write.
        quantize: ``"none"`` (``model.export(format="litert")``), ``"dynamic"``
            (int8 weights), ``"float16"`` (float16 weights) or ``"int8"`` (int8
            weights and activations, calibrated on ``representative_images``).
        representative_images: Training inputs for int8 calibration (about 100), as
            ``model.predict`` takes them (an array, or a list / dict for several inputs).

    Returns:
        The written path.

    Raises:
        ValueError: For an unknown quantization or int8 without images.
        LiteRTError: When the model cannot be traced into a TensorFlow graph
            (a layer branching in Python on a tensor's value).
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}.")
    if quantize == "int8" and representative_images is None:
        raise ValueError("int8 quantization needs representative_images (training data).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = float32_model(model)
    if quantize == "none":
        with atomic_path(path) as temporary, graph_errors_named(path):
            model.export(str(temporary), format="litert", verbose=False)
        return path
    with tempfile.TemporaryDirectory() as folder:
        with graph_errors_named(path):
            model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = _calibration(model, representative_images)
        write_bytes(path, converter.convert())
    return path


def _calibration(model: keras.Model, inputs):
    """int8 calibration examples, one at a time, keyed by the signature's input names."""
    from tfprune.export.model_io import litert_feed

    feed = {name: np.asarray(array, dtype=tensor.dtype) for (name, array), tensor in
            zip(litert_feed(model, inputs).items(), model.inputs, strict=True)}
    count = len(next(iter(feed.values())))
    return lambda: ({name: array[index:index + 1] for name, array in feed.items()}
                    for index in range(count))


def run_tflite(path: str | os.PathLike, inputs, threads: int = 1):
    """Runs a .tflite file in the LiteRT interpreter, one example at a time.

    Args:
        path: The .tflite file.
        inputs: An array for a one-input model (images, token ids), else a dict
            keyed by the signature's input names (``model_io.litert_feed`` maps a
            Keras model's inputs); each is cast to the input's dtype.
        threads: Interpreter threads.

    Returns:
        The output array for a one-output model, else a dict keyed by the
        signature's output names (``model_io.output_names``).

    Raises:
        ValueError: When ``inputs`` does not match the signature's inputs.
        LiteRTError: When the interpreter lacks ops the file needs (Flex ops).
    """
    runner = litert_interpreter(path, threads).get_signature_runner()
    details = runner.get_input_details()
    if not isinstance(inputs, dict):
        if len(details) != 1:
            raise ValueError(f"{path} has {len(details)} inputs ({sorted(details)}): pass a "
                             "dict keyed by these names (tfprune.export.model_io.litert_feed).")
        inputs = {next(iter(details)): inputs}
    if set(inputs) != set(details):
        raise ValueError(f"{path}: the inputs are named {sorted(details)}, got {sorted(inputs)}.")
    arrays = {name: np.asarray(value).astype(details[name]["dtype"])
              for name, value in inputs.items()}
    if len({len(array) for array in arrays.values()}) != 1:
        raise ValueError(f"{path}: the inputs hold different numbers of examples.")
    outputs: dict[str, list] = {}
    for index in range(len(next(iter(arrays.values())))):
        with flex_errors_named(path):
            result = runner(**{name: array[index:index + 1] for name, array in arrays.items()})
        for name, value in result.items():
            outputs.setdefault(name, []).append(value[0].copy())
    stacked = {name: np.stack(values) for name, values in sorted(outputs.items())}
    return next(iter(stacked.values())) if len(stacked) == 1 else stacked


def run_tflite_for(path: str | os.PathLike, model: keras.Model, inputs,
                   threads: int = 1) -> dict[str, np.ndarray]:
    """``run_tflite`` on a Keras model's inputs: ``{output name: array}``.

    Args:
        path: The model's .tflite file.
        model: The Keras model it was exported from.
        inputs: As ``model.predict`` takes them: an array, a list or a dict.
        threads: Interpreter threads.
    """
    from tfprune.export.model_io import litert_feed, output_names

    result = run_tflite(path, litert_feed(model, inputs), threads)
    return result if isinstance(result, dict) else {output_names(model)[0]: result}


def _by_name(outputs) -> dict[str, np.ndarray]:
    if isinstance(outputs, dict):
        return {name: np.asarray(value) for name, value in outputs.items()}
    return {"output_0": np.asarray(outputs)}


def compare_outputs(expected, actual) -> Verification:
    """Compares Keras outputs (``expected``) with LiteRT's (``actual``) for the same inputs.

    Both are an array (one output) or dicts with the same keys (one entry per
    output). ``max_abs_diff`` is the largest over every output; top-1
    agreement reads the outputs with more than one value per example (class
    scores), the lowest of them; NaN when there are none (regression only).

    Raises:
        ValueError: When the two hold different outputs.
    """
    expected, actual = _by_name(expected), _by_name(actual)
    if set(expected) != set(actual):
        raise ValueError(f"the Keras outputs are {sorted(expected)}, the LiteRT outputs "
                         f"{sorted(actual)}.")
    differences = {name: float(np.max(np.abs(actual[name] - value)))
                   for name, value in expected.items()}
    agreements = [float(np.mean(actual[name].argmax(-1) == value.argmax(-1)))
                  for name, value in expected.items() if value.ndim >= 2 and value.shape[-1] > 1]
    return Verification(
        max_abs_diff=max(differences.values()),
        top1_agreement=min(agreements, default=float("nan")),
        examples=len(next(iter(expected.values()))),
        per_output=differences if len(differences) > 1 else {},
        scale=max(float(np.max(np.abs(value))) for value in expected.values()),
    )


def verify_tflite(path: str | os.PathLike, model: keras.Model, inputs) -> Verification:
    """Compares the .tflite file's outputs with the Keras model's (inference mode).

    Args:
        path: The model's .tflite file.
        model: The Keras model (in float32, as ``export_tflite`` wrote it).
        inputs: As ``model.predict`` takes them: an array, a list or a dict.
    """
    from tfprune.export.model_io import named_outputs

    model = float32_model(model)
    expected = named_outputs(model, model.predict(inputs, verbose=0))
    return compare_outputs(expected, run_tflite_for(path, model, inputs))
