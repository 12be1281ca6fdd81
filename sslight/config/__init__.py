"""Run configuration: schema, presets, loading.

Names are imported lazily (PEP 562): method modules import ``sslight.config.base`` while the
schema itself is built from the method registry, so an eager import here would be circular.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "sslight.config.load",
    "apply_overrides": "sslight.config.load",
    "config_key": "sslight.config.load",
    "config_to_dict": "sslight.config.load",
    "load_config": "sslight.config.load",
    "load_yaml": "sslight.config.load",
    "resolve": "sslight.config.load",
    "RunConfig": "sslight.config.schema",
    "run_config_model": "sslight.config.schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sslight.config' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
