"""SSLight lab's ML library: the public API the orchestrator uses.

import sslight
cfg = sslight.load_config("experiments/smoke/pipeline.yaml", ["output_dir=/tmp/p"])
result = sslight.run(cfg)   # the whole result.json as a dict
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "load_config", "resolve", "run"]


def __getattr__(name: str) -> Any:  # lazy: importing sslight stays cheap
    if name == "run":
        from sslight.pipeline import run

        return run
    if name in ("ConfigError", "load_config", "resolve"):
        from sslight.config import load

        return getattr(load, name)
    raise AttributeError(f"module 'sslight' has no attribute {name!r}")
