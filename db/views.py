"""Plain frozen views of registry rows, detached from any session."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class GridView:
    id: int
    name: str
    source: str
    workdir: str
    spec: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RunView:
    key: str
    name: str
    grid: str
    config: dict[str, Any]
    status: str
    stage: str | None
    output_dir: str
    mlflow_run_id: str | None
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    kind: str = "cell"
    pretrain_key: str | None = None
    parent_key: str | None = None
    depends_on: str | None = None
    resources: dict[str, Any] | None = None


@dataclass(frozen=True)
class AttemptView:
    id: int
    key: str
    executor: str
    job_id: str | None
    node: str | None
    state: str
    started_at: datetime
    ended_at: datetime | None
    error_tail: str | None


def _utc(value: Any) -> Any:
    """Timestamps in UTC (SQLite drops the zone of stored ones; they were written in UTC)."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def view(cls: type[V], row: Any, **extra: Any) -> V:
    """``cls`` filled from the ORM object ``row``'s attributes of the same names, or ``extra``."""
    values = {
        f.name: extra[f.name] if f.name in extra else _utc(getattr(row, f.name))
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    }
    return cls(**values)
