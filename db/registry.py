"""The registry API: grids, runs and attempts, each operation one short ORM transaction.

Open one with ``db.open_registry(url)``. Reads return frozen views detached from any session.
On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (see ``db.session``), so
writers queue on the busy timeout instead of failing; on PostgreSQL claims lock their rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from db.attempts import ERROR_TAIL_CHARS, AttemptRecords
from db.checks import RegistryError, check_choice, chunks
from db.models import Attempt, Grid, Run
from db.status import CLAIMABLE, STATUSES, RunStatus
from db.views import GridView, RunView, view

__all__ = ["ERROR_TAIL_CHARS", "Registry", "RegistryError"]

T = TypeVar("T")
JOB_FIELDS = ("kind", "pretrain_key", "parent_key", "depends_on", "resources")
_RETRIES = 4


def _transient(exc: DBAPIError) -> bool:
    """Errors after which the whole transaction was rolled back and may simply be rerun."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    message = str(exc.orig).lower()
    return code in ("40001", "40P01") or "database is locked" in message or "deadlock" in message


class Registry(AttemptRecords):
    """Grids, runs and attempts in one SQL database; safe to share among processes."""

    def __init__(self, engine: Engine, url: str, migrated: bool = False) -> None:
        self.engine = engine
        self.url = url  # unmasked: jobs need it; print ``db.mask_url(url)`` instead
        self.migrated = migrated  # whether opening it ran a schema migration
        self._read_engine = engine.execution_options(sslight_read_only=True)

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """One ORM transaction, committed on success; ``write=False`` for reads only."""
        bind = self.engine if write else self._read_engine
        with Session(bind, expire_on_commit=False) as session, session.begin():
            yield session

    def _tx(self, fn: Callable[[Session], T], write: bool = True, races: bool = False) -> T:
        """Run ``fn`` in one transaction, retried on transient errors (and unique races)."""
        for attempt in range(_RETRIES):
            try:
                with self.session(write) as session:
                    return fn(session)
            except DBAPIError as exc:
                retry = races if isinstance(exc, IntegrityError) else _transient(exc)
                if not retry or attempt == _RETRIES - 1:
                    raise
            time.sleep(random.uniform(0.02, 0.1) * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _run(session: Session, key: str) -> Run:
        run = session.scalar(select(Run).where(Run.key == key))
        if run is None:
            raise RegistryError(f"no run with key {key!r} in the registry")
        return run

    # -- grids and runs ------------------------------------------------------------------

    def upsert_grid(self, name: str, source: str, workdir: str, spec: dict[str, Any]) -> int:
        """Register grid ``name`` (or refresh its source, workdir and spec); return its id."""

        def op(session: Session) -> int:
            grid = session.scalar(select(Grid).where(Grid.name == name))
            if grid is None:
                grid = Grid(name=name, source=str(source), workdir=str(workdir), spec=spec)
                session.add(grid)
            else:
                grid.source, grid.workdir, grid.spec = str(source), str(workdir), spec
            session.flush()
            return grid.id

        return self._tx(op, races=True)

    def add_runs(self, grid_id: int, cells: Iterable[dict[str, Any]]) -> list[str]:
        """Insert cells (dicts: key, name, config, output_dir, and optionally the stage-job fields
        ``JOB_FIELDS``) with new keys; return those keys. An existing key is left as it is: a
        pretraining registered by another grid stays that grid's, shared."""
        unique: dict[str, dict[str, Any]] = {}
        for cell in cells:
            unique.setdefault(cell["key"], cell)  # the first cell of a key wins
        keys = list(unique)

        def op(session: Session) -> list[str]:
            if session.get(Grid, grid_id) is None:
                raise RegistryError(f"no grid with id {grid_id} in the registry")
            existing: set[str] = set()
            for chunk in chunks(keys):
                existing.update(session.scalars(select(Run.key).where(Run.key.in_(chunk))))
            new = [k for k in keys if k not in existing]
            for c in (unique[k] for k in new):
                fields = {
                    "name": c["name"],
                    "config": c["config"],
                    "output_dir": str(c["output_dir"]),
                    **{k: c[k] for k in JOB_FIELDS if c.get(k) is not None},
                }
                session.add(
                    Run(grid_id=grid_id, key=c["key"], status=RunStatus.PENDING.value, **fields)
                )
            return new

        return self._tx(op, races=True)

    def claim_for_submission(
        self, keys: Iterable[str], allowed_statuses: Iterable[str] = CLAIMABLE
    ) -> list[str]:
        """Move runs in ``allowed_statuses`` to "submitted" atomically; return the keys moved.

        Concurrent callers never both claim one key: SQLite serialises writers (BEGIN
        IMMEDIATE); elsewhere ``SELECT ... FOR UPDATE`` locks the rows and re-checks status.
        """
        keys, allowed = list(dict.fromkeys(keys)), tuple(str(s) for s in allowed_statuses)
        for status in allowed:
            check_choice(status, STATUSES, "status")

        def op(session: Session) -> list[str]:
            claimed: set[str] = set()
            for chunk in chunks(sorted(keys)):  # sorted: one lock order for every caller
                query = (
                    select(Run)
                    .where(Run.key.in_(chunk), Run.status.in_(allowed))
                    .order_by(Run.key)
                    .with_for_update()
                )
                for run in session.scalars(query):
                    run.status, run.stage, run.error = RunStatus.SUBMITTED.value, None, None
                    claimed.add(run.key)
            return [k for k in keys if k in claimed]

        return self._tx(op)

    def set_status(
        self, key: str, status: str, stage: str | None = None, error: str | None = None
    ) -> None:
        """Set a run's status; ``stage`` and ``error`` are written only when given."""
        check_choice(status, STATUSES, "status")

        def op(session: Session) -> None:
            run = self._run(session, key)
            run.status = str(status)  # a RunStatus stores as its value
            if stage is not None:
                run.stage = stage
            if error is not None:
                run.error = error

        self._tx(op)

    def set_stage(self, key: str, stage: str | None) -> None:
        """Set (or with None, clear) the stage a run is in."""
        self._tx(lambda s: setattr(self._run(s, key), "stage", stage))

    def record_result(self, key: str, result: dict[str, Any], merge: bool = True) -> None:
        """Store a run's result metrics, merged into those already stored unless ``merge=False``."""

        def op(session: Session) -> None:
            run = self._run(session, key)
            run.result = {**(run.result or {}), **result} if merge else dict(result)

        self._tx(op)

    def set_mlflow_run_id(self, key: str, mlflow_run_id: str | None) -> None:
        self._tx(lambda s: setattr(self._run(s, key), "mlflow_run_id", mlflow_run_id))

    # -- reads ---------------------------------------------------------------------------

    def grids(self) -> list[GridView]:
        def op(session: Session) -> list[GridView]:
            return [view(GridView, g) for g in session.scalars(select(Grid).order_by(Grid.id))]

        return self._tx(op, write=False)

    def runs(
        self,
        grid_name: str | None = None,
        statuses: Iterable[str] | None = None,
        keys: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
    ) -> list[RunView]:
        """Runs, optionally of one grid, in some statuses, with some keys or of some kinds
        (``cell``: a grid's cells, not their pretraining and stage jobs); in creation order."""
        query = select(Run, Grid.name).join(Grid).order_by(Run.id)
        if grid_name is not None:
            query = query.where(Grid.name == grid_name)
        if statuses is not None:
            query = query.where(Run.status.in_([str(status) for status in statuses]))
        if keys is not None:
            query = query.where(Run.key.in_(list(keys)))
        if kinds is not None:
            query = query.where(Run.kind.in_(list(kinds)))
        return self._tx(
            lambda s: [view(RunView, r, grid=g) for r, g in s.execute(query)], write=False
        )

    def cell_jobs(self, cell_key: str) -> list[RunView]:
        """A cell's evaluation jobs: the cell itself and the stage jobs of its ``parent_key``."""
        query = (
            select(Run, Grid.name)
            .join(Grid)
            .where((Run.key == cell_key) | (Run.parent_key == cell_key))
            .order_by(Run.id)
        )
        return self._tx(
            lambda s: [view(RunView, r, grid=g) for r, g in s.execute(query)], write=False
        )

    def run(self, key: str) -> RunView | None:
        found = self.runs(keys=[key])
        return found[0] if found else None

    def run_summaries(
        self,
        grid_name: str | None = None,
        metrics: Sequence[str] = (),
        keys: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """What ``orchestrate status`` shows of every run (of one grid, or with ``keys``), in
        creation order, in one query: grid, name, key, status, stage, error, output_dir, the
        stage-job columns, ``attempts`` (their number) and each of ``metrics`` from the result
        (None where absent). Neither configs nor whole results are read, so this stays fast for
        tens of thousands of runs."""
        counts = (
            select(Attempt.run_id, func.count(Attempt.id).label("attempts"))
            .group_by(Attempt.run_id)
            .subquery()
        )
        query = (
            select(
                Grid.name.label("grid"),
                Run.name,
                Run.key,
                Run.status,
                Run.stage,
                Run.error,
                Run.output_dir,
                Run.kind,
                Run.pretrain_key,
                Run.parent_key,
                Run.depends_on,
                Run.config["stages"].label("stages"),
                func.coalesce(counts.c.attempts, 0).label("attempts"),
                *(Run.result[metric].as_float().label(metric) for metric in metrics),
            )
            .join(Grid, Run.grid_id == Grid.id)
            .outerjoin(counts, counts.c.run_id == Run.id)
            .order_by(Run.id)
        )
        if grid_name is not None:
            query = query.where(Grid.name == grid_name)
        if keys is not None:
            query = query.where(Run.key.in_(list(keys)))
        return self._tx(
            lambda s: [dict(row) for row in s.connection().execute(query).mappings()], write=False
        )
