"""The registry a test's ``orchestrate --root <tmp_path>/runs`` commands write to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from db import open_registry, resolve_url


def root_registry(tmp_path: Path) -> Any:
    """The default registry under ``tmp_path / "runs"`` (what ``--root`` points the CLI at)."""
    return open_registry(resolve_url(None, str(tmp_path / "runs")))
