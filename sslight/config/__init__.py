"""Run configuration: schema, presets, loading.

Names are imported on first use (PEP 562): a method module imports
``sslight.config.base`` for its config section without loading the schema and YAML handling; the
run config model is built from the method registry on first use (``run_config_model``).
"""

from __future__ import annotations

from sslight.lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
