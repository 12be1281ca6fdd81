"""The run directory contract (docs/architecture.md): config.yaml, checkpoints/, metrics.jsonl,
result.json, and init_weights.json when evaluation starts from given weights.

``config.yaml`` records the config a run was started with. A later command on the same directory
(resume, more stages) must bring the same config: one that differs is refused (bad input) and the
record is kept. Keys that cannot change the results may differ (``CONFIG_KEYS_FREE_TO_CHANGE``:
where the directory lives, progress bars, how often steps are logged), and so may keys only one of
the two configs has (a field added to or removed from the schema since the run started).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import yaml

from sslight.config.load import ConfigError

# ``stages``: a cell's evaluation jobs share its directory, each with the stages it runs
CONFIG_KEYS_FREE_TO_CHANGE = ("output_dir", "stages", "train.progress", "train.log_every_steps")
RESULT_LOCK = ".result.lock"


class RunDir:
    """The paths of one run's directory; every file a run writes there is named here."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"
        self.result = self.root / "result.json"
        self.init_weights = self.root / "init_weights.json"  # what init.weights loaded
        self.export = self.root / "export"  # the evaluated backbone (sslight/weights/export.py)
        self.report = self.root / "report"  # the run's training curves (orchestrate report)

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        _atomic_write(self.config, yaml.safe_dump(config, sort_keys=False))

    def check_config(self, config: dict[str, Any]) -> None:
        """Raise ConfigError if ``config.yaml`` records a config that differs from ``config``
        in a key that can change the run's results (see the module docstring)."""
        if not self.config.exists():
            return
        try:
            recorded = yaml.safe_load(self.config.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(
                str(self.config), "", f"cannot read the recorded config: {err}"
            ) from None
        differing = config_differences(recorded if isinstance(recorded, dict) else {}, config)
        if differing:
            shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in differing.items())
            raise ConfigError(
                str(self.config),
                ", ".join(differing),
                f"{self.root} holds a run started with another config ({shown[:1500]}); "
                "resume it with the recorded config (e.g. `sslight run "
                f"{self.config}`) or give a new output_dir",
            )

    def record_config(self, config: dict[str, Any]) -> None:
        """Write ``config.yaml`` unless it records another config (then ConfigError)."""
        self.check_config(config)
        self.write_config(config)

    def read_result(self) -> dict[str, Any]:
        if not self.result.exists():
            return {}
        return json.loads(self.result.read_text())

    def update_result(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into result.json (atomically; a None value removes its key). The
        merge holds a lock on the directory: a cell's evaluation jobs may finish together."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / RESULT_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                merged = {**self.read_result(), **values}
                result = {key: value for key, value in merged.items() if value is not None}
                _atomic_write(self.result, json.dumps(result, indent=2, sort_keys=True) + "\n")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return result


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(recorded: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple]:
    """Dotted key -> (recorded, new) for keys both configs have with different values."""
    old, now = _flatten(recorded), _flatten(new)
    return {
        key: (old[key], now[key])
        for key in sorted(old.keys() & now.keys())
        if key not in CONFIG_KEYS_FREE_TO_CHANGE and old[key] != now[key]
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
