"""Alembic environment: migrate the connection ``open_registry`` hands over, or a URL.

At runtime ``db.session.open_registry`` passes an open connection (already inside a locked
transaction) as ``config.attributes["connection"]``. From the ``alembic`` command line
(``alembic -c db/alembic.ini ...``) the URL comes from ``-x url=...``, then ``SSLIGHT_DB_URL``.
"""

from __future__ import annotations

import os

from alembic import context

from db.models import Base
from db.session import create_registry_engine

config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("SSLIGHT_DB_URL")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set SSLIGHT_DB_URL")
    return url


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (conn := config.attributes.get("connection")) is not None:
    _run(conn)
else:
    engine = create_registry_engine(_url())
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()
