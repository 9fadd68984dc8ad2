"""Loading, overriding and validating YAML configs."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from tfprune.config.schema import SCHEMA, defaults


class ConfigError(ValueError):
    """An invalid config: names the key, the bad value and the allowed values."""


def _type_ok(value, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _validate_value(section: str, key: str, value: Any) -> Any:
    field = SCHEMA[section][key]
    where = f"{section}.{key}"
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(f"{where}: must not be null; allowed: {field.allowed}.")
    if not _type_ok(value, field.types) or not field.check(value):
        raise ConfigError(f"{where}: invalid value {value!r}; allowed: {field.allowed}.")
    return float(value) if field.types == (float,) else value


def validate(config: dict) -> dict:
    """Checks every section and key of ``config`` and fills in the defaults.

    Args:
        config: A nested mapping ``{section: {key: value}}``; missing keys take defaults.

    Returns:
        A new, complete config dict.

    Raises:
        ConfigError: For an unknown section or key (listing the valid ones), a
            value of the wrong type or out of range (naming the allowed values).
    """
    if not isinstance(config, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(config).__name__}.")
    resolved = defaults()
    for section, values in config.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"unknown section {section!r}; valid sections: {', '.join(SCHEMA)}."
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: must be a mapping of keys, got {values!r}.")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"unknown key {section}.{key}; valid keys of {section}: "
                    f"{', '.join(SCHEMA[section])}."
                )
            resolved[section][key] = _validate_value(section, key, value)
    _check_lr_schedule(resolved["train"])
    return resolved


def _check_lr_schedule(train: dict) -> None:
    if len(train["lr_values"]) != len(train["lr_phases"]):
        raise ConfigError(
            f"train.lr_values has {len(train['lr_values'])} entries but train.lr_phases "
            f"has {len(train['lr_phases'])}; give one learning rate per phase."
        )
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in train["lr_phases"]):
        raise ConfigError(f"train.lr_phases: epoch counts must be integers, got "
                          f"{train['lr_phases']!r}.")


def parse_key_value(text: str, flag: str = "--set") -> tuple[str, Any]:
    """Parses ``key=value`` (value in YAML syntax) into ``(key, value)``.

    Raises:
        ConfigError: If the text has no ``=`` or the value is not valid YAML.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"{flag} {text!r}: expected key=value.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"{flag} {text!r}: value is not valid YAML ({error}).") from None
    return name.strip(), value


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parses ``section.key=value`` (value in YAML syntax) into its parts.

    Raises:
        ConfigError: If the text is not of that form.
    """
    name, value = parse_key_value(text) if "=" in text else ("", None)
    section, dot, key = name.partition(".")
    if not dot or not section or not key:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.epochs=10.")
    return section, key, value


def apply_overrides(config: dict, overrides: list[str] | None) -> dict:
    """Returns a copy of ``config`` with each ``section.key=value`` override set."""
    config = copy.deepcopy(config)
    for text in overrides or []:
        section, key, value = parse_override(text)
        if not isinstance(config.get(section, {}), dict):
            raise ConfigError(f"--set {text!r}: section {section!r} is not a mapping.")
        node = config.setdefault(section, {})
        *parents, last = key.split(".")  # prune.target.flops=1e7 sets a nested mapping
        for name in parents:
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        node[last] = value
    return config


def read_yaml(path: str | os.PathLike) -> dict:
    """Reads a YAML config file.

    Raises:
        ConfigError: If the file is missing, not UTF-8 text (a model or data file
            given as a config), not valid YAML, empty or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found.")
    if path.suffix.lower() in _NOT_CONFIGS:
        raise ConfigError(f"{path}: {_NOT_CONFIGS[path.suffix.lower()]}, not a YAML config.")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file, so not a YAML config (a model or "
                          "data file?); save the config as UTF-8 text.") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from None
    if content is None:
        raise ConfigError(f"{path}: the config is empty. tfprune will not train its defaults "
                          "(VGG-13 on CIFAR-10 for 160 epochs) silently: give at least model, "
                          "data and train sections (configs/quickstart.yaml is a start).")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections (model:, data:, ...), "
                          f"not a {type(content).__name__}.")
    return content


#: File endings that are not configs, with what they are.
_NOT_CONFIGS = {
    ".h5": "a legacy HDF5 Keras file (tfprune reads models saved as .keras: load it in Keras "
           "and model.save('model.keras'))",
    ".hdf5": "a legacy HDF5 Keras file (tfprune reads models saved as .keras)",
    ".keras": "a Keras model file",
    ".tflite": "a TFLite model file",
    ".npz": "a NumPy archive",
    ".zip": "a zip archive",
}


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> dict:
    """Reads, overrides and validates a config.

    Args:
        path: A YAML file; None starts from the defaults.
        overrides: ``section.key=value`` strings, applied after the file.

    Returns:
        The complete, validated config.

    Example:
        >>> config = load_config("configs/quickstart.yaml", ["train.epochs=2"])
    """
    raw = read_yaml(path) if path is not None else {}
    try:
        return validate(apply_overrides(raw, overrides))
    except ConfigError as error:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{error}") from None


def save_config(config: dict, path: str | os.PathLike) -> None:
    """Writes a resolved config as YAML (atomically)."""
    from tfprune.atomic import write_text

    write_text(path, yaml.safe_dump(config, sort_keys=False))
