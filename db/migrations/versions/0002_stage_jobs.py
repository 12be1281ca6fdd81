"""Stage jobs: a run is one job of a grid cell, the shared pretraining its evaluations wait for.

``kind`` is ``cell`` (a grid cell: its first evaluation job, or every stage when the cell is not
split), ``pretrain`` (a pretraining that cells of any grid with the same ``pretrain_key`` share)
or ``stage`` (a further evaluation job of the cell ``parent_key``); ``depends_on`` is the key of
the run that must finish first; ``resources`` what the job asks the scheduler for. Runs
registered before stay cells that run all their stages in one job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KINDS = ("cell", "pretrain", "stage")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="cell"))
        batch.add_column(sa.Column("pretrain_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parent_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("depends_on", sa.String(64), nullable=True))
        batch.add_column(sa.Column("resources", sa.JSON(none_as_null=True), nullable=True))
        batch.create_check_constraint("kind", f"kind IN ({', '.join(repr(k) for k in KINDS)})")
        batch.create_index(op.f("ix_runs_pretrain_key"), ["pretrain_key"])
        batch.create_index(op.f("ix_runs_parent_key"), ["parent_key"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(op.f("ix_runs_parent_key"))
        batch.drop_index(op.f("ix_runs_pretrain_key"))
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        for column in ("resources", "depends_on", "parent_key", "pretrain_key", "kind"):
            batch.drop_column(column)
