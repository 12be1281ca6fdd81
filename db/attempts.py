"""The attempts at a registry run: one row per job that ran it, with its executor, job id, node,
state and the tail of its error. ``AttemptRecords`` is the part of ``Registry`` that keeps them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.checks import RegistryError, check_choice, chunks
from db.models import EXECUTORS, Attempt, Run, utcnow
from db.views import AttemptView, view

ERROR_TAIL_CHARS = 8000  # attempts keep the last this-many characters of an error


class AttemptRecords:
    """Attempt operations of the registry (mixed into ``Registry``, which supplies ``_tx`` and
    ``_run``)."""

    _tx: Callable[..., Any]
    _run: Callable[[Session, str], Run]

    def start_attempt(
        self,
        key: str,
        executor: str,
        job_id: str | None = None,
        node: str | None = None,
        state: str = "running",
    ) -> int:
        """Record a new attempt at run ``key``; return its id."""
        check_choice(executor, EXECUTORS, "executor")

        def op(session: Session) -> int:
            run_id = self._run(session, key).id
            attempt = Attempt(
                run_id=run_id, executor=executor, job_id=job_id, node=node, state=str(state)
            )
            session.add(attempt)
            session.flush()
            return attempt.id

        return self._tx(op)

    def update_attempt(
        self,
        attempt_id: int,
        *,
        state: str | None = None,
        job_id: str | None = None,
        node: str | None = None,
    ) -> None:
        """Fill in what an attempt learnt after it started; None leaves a field as it is."""

        def op(session: Session) -> None:
            attempt = self._attempt(session, attempt_id)
            for field, value in (("state", state), ("job_id", job_id), ("node", node)):
                if value is not None:
                    setattr(attempt, field, str(value))

        self._tx(op)

    def finish_attempt(self, attempt_id: int, state: str, error_tail: str | None = None) -> None:
        """Close an attempt with its final ``state`` and the tail of its error, if any."""

        def op(session: Session) -> None:
            attempt = self._attempt(session, attempt_id)
            attempt.state, attempt.ended_at = str(state), utcnow()
            if error_tail is not None:
                attempt.error_tail = error_tail[-ERROR_TAIL_CHARS:]

        self._tx(op)

    @staticmethod
    def _attempt(session: Session, attempt_id: int) -> Attempt:
        attempt = session.get(Attempt, attempt_id)
        if attempt is None:
            raise RegistryError(f"no attempt with id {attempt_id} in the registry")
        return attempt

    def attempts_by_key(self, keys: Iterable[str]) -> dict[str, list[AttemptView]]:
        """Every attempt at each of ``keys``, oldest first (keys without attempts are absent)."""
        keys = list(dict.fromkeys(keys))

        def op(session: Session) -> dict[str, list[AttemptView]]:
            found: dict[str, list[AttemptView]] = {}
            for chunk in chunks(keys):
                query = (
                    select(Attempt, Run.key)
                    .join(Run)
                    .where(Run.key.in_(chunk))
                    .order_by(Attempt.id)
                )
                for attempt, key in session.execute(query):
                    found.setdefault(key, []).append(view(AttemptView, attempt, key=key))
            return found

        return self._tx(op, write=False)

    def attempts(self, key: str) -> list[AttemptView]:
        """Every attempt at run ``key``, oldest first."""
        query = select(Attempt).join(Run).where(Run.key == key).order_by(Attempt.id)
        return self._tx(
            lambda s: [view(AttemptView, a, key=key) for a in s.scalars(query)], write=False
        )
