"""Loading a user's Keras model file, with errors that name the file and the fix.

Every command and API that takes a saved model (``tfprune groups model.keras``,
``finetune.source``, ``--checkpoint``, ``initial_weights``, run folders) loads
it here. Files load in Keras' safe mode: a file cannot run code (a ``Lambda``
holding Python bytecode is refused, with what to do instead). A file whose
custom layers, losses or activations this process does not know says which,
and how to make them known: import the module that registers them (on the
command line, ``tfprune --import MODULE ...``).
"""

from __future__ import annotations

import importlib
import re
import zipfile
from pathlib import Path

from tfprune.storage import StorageError

#: File suffixes Keras 3 loads: the ``.keras`` archive and legacy HDF5.
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

_UNKNOWN = re.compile(r"Could not locate (class|function) '([^']+)'")

#: tfprune's modules that register Keras objects and are not imported by ``import tfprune``
#: (they import an optional dependency): imported when a file's config names them.
OPTIONAL_OBJECT_MODULES = ("tfprune.hub_objects",)


class ModelFileError(StorageError):
    """A model file is missing, not a Keras model, corrupted, or needs code to load."""


def load_model_file(path, *, what: str = "model", compile: bool = False):
    """Loads a ``.keras`` (or legacy ``.h5``) model in Keras' safe mode.

    Args:
        path: The file.
        what: What the file is, for messages (``"finetune.source"``, ``"the
            last checkpoint"``).
        compile: Whether to restore the compiled loss, metrics and optimizer.

    Returns:
        The ``keras.Model``.

    Raises:
        ModelFileError: Naming the file and the fix, if it is missing, not a
            Keras model file, corrupted or truncated, holds a Python lambda, or
            uses a custom object this process has not registered.

    Example:
        >>> model = load_model_file("my_model.keras")
    """
    import keras

    path = Path(path)
    _check_file(path, what)
    _import_named_object_modules(path)
    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, KeyError, TypeError, AttributeError,
            zipfile.BadZipFile) as error:
        raise ModelFileError(_explain(path, what, error)) from None


def _check_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise ModelFileError(
            f"{path}: {what} is a folder; tfprune reads Keras 3 model files "
            f"({', '.join(MODEL_SUFFIXES)}). A TensorFlow SavedModel folder cannot be rebuilt "
            "as Keras layers: load the original Keras model and model.save('model.keras').")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file ({what}).")
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelFileError(f"{path}: {what} is not a Keras model file "
                             f"({', '.join(MODEL_SUFFIXES)}).")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: {what} cannot be loaded: not a .keras archive (the "
                             "file is truncated or corrupted).")


def _import_named_object_modules(path: Path) -> None:
    """Imports the ``OPTIONAL_OBJECT_MODULES`` a ``.keras`` file's config names."""
    if path.suffix != ".keras":
        return
    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.read("config.json").decode("utf-8", "replace")
    except (KeyError, OSError, zipfile.BadZipFile):
        return  # Keras says what is wrong with the file
    for module in OPTIONAL_OBJECT_MODULES:
        if f'"{module}"' in config:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise ModelFileError(
                    f"{path}: the model holds layers of {module}, which need {error.name}: "
                    "install it (pip install 'tfprune[hub]').") from None


def _explain(path: Path, what: str, error: Exception) -> str:
    message = str(error)
    if "Lambda" in message and "safe_mode" in message:
        return (f"{path}: {what} holds a Lambda layer with Python code, and tfprune loads "
                "model files in Keras' safe mode, where no code from a file runs. Replace the "
                "Lambda by a custom layer registered with "
                "@keras.saving.register_keras_serializable() and import its module "
                "(`tfprune --import MODULE ...`); or, for a file you trust, load it yourself "
                "with keras.models.load_model(path, safe_mode=False) and use the Python API.")
    unknown = _UNKNOWN.search(message)
    if unknown:
        kind, name = unknown.groups()
        return (f"{path}: {what} uses the {kind} {name!r}, which this process does not know. "
                "Import the module that defines it, decorated with "
                "@keras.saving.register_keras_serializable(), before loading: on the command "
                "line `tfprune --import MODULE ...` (MODULE importable from the current "
                "folder), in Python `import MODULE` first.")
    first_line = message.splitlines()[0][:200] if message else ""
    return (f"{path}: {what} cannot be loaded ({type(error).__name__}: {first_line}); the file "
            "is corrupted or truncated, or was not written by Keras 3.")
