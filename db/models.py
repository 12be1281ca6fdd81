"""SQLAlchemy 2 models of the registry: grids, their runs, and every attempt at a run.

Alembic (``db/migrations``) is the only schema creator; a test checks the migrated schema
matches this metadata.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db.status import STATUSES, RunStatus

EXECUTORS = ("local", "slurm", "debug")
RUN_KINDS = ("cell", "pretrain", "stage")  # db/migrations/versions/0002_stage_jobs.py

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSON(none_as_null=True),
    }


class Grid(Base):
    """One grid file, registered under its name."""

    __tablename__ = "grids"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(Text)
    workdir: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    runs: Mapped[list[Run]] = relationship(back_populates="grid")


class Run(Base):
    """One job of a grid: a cell (its resolved config, identified by its hash ``key``), a shared
    pretraining or a further evaluation job of a cell (``kind``)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), index=True, default=RunStatus.PENDING.value)
    stage: Mapped[str | None] = mapped_column(String(64))
    output_dir: Mapped[str] = mapped_column(Text)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    # stage jobs (0002): what this job is, the pretraining it shares, the cell it belongs to,
    # the run that must finish before it starts, and what it asks the scheduler for
    kind: Mapped[str] = mapped_column(String(16), default="cell", server_default="cell")
    pretrain_key: Mapped[str | None] = mapped_column(String(64), index=True)
    parent_key: Mapped[str | None] = mapped_column(String(64), index=True)
    depends_on: Mapped[str | None] = mapped_column(String(64))
    resources: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    grid: Mapped[Grid] = relationship(back_populates="runs")
    attempts: Mapped[list[Attempt]] = relationship(back_populates="run", order_by="Attempt.id")


class Attempt(Base):
    """One submission of a run to an executor."""

    __tablename__ = "attempts"
    __table_args__ = (CheckConstraint(_in("executor", EXECUTORS), name="executor"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    executor: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(64))
    node: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(32))
    error_tail: Mapped[str | None] = mapped_column(Text)

    run: Mapped[Run] = relationship(back_populates="attempts")
