"""The run directory contract (DESIGN.md): config.yaml, checkpoints/, metrics.jsonl, result.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"
        self.result = self.root / "result.json"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        _atomic_write(self.config, yaml.safe_dump(config, sort_keys=False))

    def read_result(self) -> dict[str, Any]:
        if not self.result.exists():
            return {}
        return json.loads(self.result.read_text())

    def update_result(self, values: dict[str, Any]) -> dict[str, Any]:
        """Merge ``values`` into result.json (atomically; a None value removes its key)."""
        merged = {**self.read_result(), **values}
        result = {key: value for key, value in merged.items() if value is not None}
        _atomic_write(self.result, json.dumps(result, indent=2, sort_keys=True) + "\n")
        return result


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
