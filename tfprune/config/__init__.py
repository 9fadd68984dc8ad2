"""YAML configs: schema, ``--set`` overrides and validation with clear errors."""

from tfprune.config.loader import (
    ConfigError,
    apply_overrides,
    load_config,
    parse_key_value,
    parse_override,
    save_config,
    validate,
)
from tfprune.config.schema import SCHEMA, defaults

__all__ = [
    "SCHEMA", "ConfigError", "apply_overrides", "defaults", "load_config", "parse_key_value",
    "parse_override",
    "save_config", "validate",
]
