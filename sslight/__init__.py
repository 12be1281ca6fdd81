"""SSLight lab's ML library: the public API the orchestrator uses.

import sslight
cfg = sslight.load_config("experiments/smoke/pipeline.yaml", ["output_dir=/tmp/p"])
result = sslight.run(cfg)   # the whole result.json as a dict

Outside ``sslight`` only these names are imported (``from sslight import X``); the contract is
checked by import-linter (``pyproject.toml``). They load lazily (PEP 562): importing ``sslight``
itself stays cheap, and each name's module is imported on first use.
"""

from __future__ import annotations

from sslight.lazy import lazy_exports

# Each public name and the module that defines it.
_EXPORTS: dict[str, str] = {
    "BACKBONES": "sslight.models.backbones",
    "ConfigError": "sslight.config.load",
    "ExitCode": "sslight.exit_codes",
    "METHODS": "sslight.methods",
    "REFERENCE_SIZE": "sslight.config.views",
    "RunDir": "sslight.engine.rundir",
    "SSLIGHT_CHANGES": "sslight.config.views",
    "apply_overrides": "sslight.config.load",
    "backbone_spec": "sslight.models.backbones",
    "config_key": "sslight.config.load",
    "pretrain_key": "sslight.config.identity",
    "config_to_dict": "sslight.config.load",
    "export_run": "sslight.weights.export",
    "input_paths": "sslight.inputs",
    "load_config": "sslight.config.load",
    "load_yaml": "sslight.config.load",
    "resolve": "sslight.config.load",
    "run": "sslight.pipeline",
    "scale_crop_size": "sslight.config.views",
    "set_dotted": "sslight.config.load",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
