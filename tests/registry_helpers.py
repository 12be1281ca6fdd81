"""The registry a test's ``orchestrate --root <tmp_path>/runs`` commands write to, and fresh
PostgreSQL databases for tests that need one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from db import open_registry, resolve_url


def root_registry(tmp_path: Path) -> Any:
    """The default registry under ``tmp_path / "runs"`` (what ``--root`` points the CLI at)."""
    return open_registry(resolve_url(None, str(tmp_path / "runs")))


@contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server_url`` (its URL), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
