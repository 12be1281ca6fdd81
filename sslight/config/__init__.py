"""Run configuration: schema, presets, loading."""

from sslight.config.load import (
    ConfigError,
    apply_overrides,
    config_key,
    config_to_dict,
    load_config,
    load_yaml,
    resolve,
)
from sslight.config.schema import RunConfig

__all__ = [
    "ConfigError",
    "RunConfig",
    "apply_overrides",
    "config_key",
    "config_to_dict",
    "load_config",
    "load_yaml",
    "resolve",
]
