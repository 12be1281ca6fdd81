"""Registry URLs, engines and migrations.

SQLite (the default, ``<workdir>/registry.db``) runs in WAL mode with a 30 s busy timeout, and
every write transaction begins with ``BEGIN IMMEDIATE``: writers take the database lock up front
and queue for it, so many concurrent jobs never hit "database is locked" on a lock upgrade.
Reads use a plain deferred ``BEGIN`` and never block in WAL mode. Any other SQLAlchemy URL
(PostgreSQL at scale) gets a pre-pinged pool; row locks do the rest (see ``Registry``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from db.registry import Registry, RegistryError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

ENV_VAR = "SSLIGHT_DB_URL"
DB_FILENAME = "registry.db"
BUSY_TIMEOUT_S = 30.0
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_MIGRATION_LOCK = 0x55_4C_49_47_48  # pg_advisory_xact_lock id serialising migrations
_READ_ONLY = "sslight_read_only"  # execution option: SQLite reads begin with a plain BEGIN


def mask_url(url: Any) -> str:
    """``url`` with its password (if any) shown as ``***``: safe for logs and messages."""
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", str(url))


def sqlite_file_url(path: str | os.PathLike[str]) -> str:
    """The SQLAlchemy (and MLflow) URL of the SQLite file at ``path``: ``sqlite:///<absolute>``."""
    return f"sqlite:///{os.path.abspath(os.path.expanduser(os.fspath(path)))}"


def url_or_sqlite_file(value: str) -> str:
    """``value`` itself if it is a URL (has ``://``), else the URL of the SQLite file it names."""
    value = value.strip()
    return value if "://" in value else sqlite_file_url(value)


def default_url(workdir: str | os.PathLike[str]) -> str:
    """The default registry: ``sqlite:///<absolute workdir>/registry.db``."""
    return sqlite_file_url(os.path.join(os.path.expanduser(os.fspath(workdir)), DB_FILENAME))


def resolve_url(cli_value: str | None, workdir: str | os.PathLike[str]) -> str:
    """The ``--db`` value, else ``$SSLIGHT_DB_URL``, else the workdir's SQLite file.

    A value without ``://`` is taken as the path of an SQLite file.
    """
    for value in (cli_value, os.environ.get(ENV_VAR)):
        if value and value.strip():
            return url_or_sqlite_file(value)
    return default_url(workdir)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # sqlite3 must not emit BEGIN; the "begin" hook does
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL (a persistent setting) unless it already is.

    The switch needs an exclusive lock and SQLite reports ``SQLITE_BUSY`` for it without
    consulting the busy handler, so racing first opens retry here for up to the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _sqlite_on_begin(conn: Connection) -> None:
    read_only = conn.get_execution_options().get(_READ_ONLY, False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def with_driver(url: str) -> str:
    """``url`` naming the PostgreSQL driver this package installs (psycopg 3).

    SQLAlchemy reads a bare ``postgresql://`` (or Heroku-style ``postgres://``) as psycopg2,
    which is not a dependency; every other URL is returned unchanged.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_registry_engine(url: str) -> Engine:
    """An engine for ``url``, set up for many concurrent writers (no migrations run)."""
    try:
        parsed = make_url(with_driver(url))
    except ArgumentError:
        raise RegistryError(f"invalid database URL {mask_url(url)!r}") from None
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_S})
    except (ImportError, NoSuchModuleError, ArgumentError, OSError) as exc:
        raise RegistryError(f"cannot use registry at {mask_url(url)}: {exc}") from exc
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def alembic_config() -> Config:
    """Alembic's config for the registry's migrations; no ini file involved."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def _migrate(engine: Engine, url: str) -> bool:
    """Bring the schema to head under a cross-process lock; True if this call migrated it."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = alembic_config()
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    known = {rev.revision for rev in script.walk_revisions()}

    def current(conn: Connection) -> tuple[str, ...]:
        heads = tuple(MigrationContext.configure(conn).get_current_heads())
        unknown = [h for h in heads if h not in known]
        if unknown:
            raise RegistryError(
                f"registry at {mask_url(url)} has schema revision {', '.join(unknown)}, newer "
                f"than this version of sslight lab (head {head}); upgrade sslight-lab, or, if "
                "Optuna or MLflow use this database (their Alembic revisions share the "
                "alembic_version table), give the registry a database of its own"
            )
        return heads

    with engine.execution_options(**{_READ_ONLY: True}).connect() as conn, conn.begin():
        if current(conn) == (head,):  # the common case: no write lock taken
            return False
    # SQLite: BEGIN IMMEDIATE holds the write lock until commit, so a racing opener waits
    # here and then finds the schema at head. PostgreSQL: a transaction-scoped advisory lock.
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        if current(conn) == (head,):
            return False
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return True


def open_registry(url: str) -> Registry:
    """Open (creating or migrating as needed) the registry at ``url``.

    Raises ``RegistryError`` with the URL masked for any database that cannot be used,
    including one written by a newer version of sslight lab.
    """
    engine = create_registry_engine(url)
    try:
        migrated = _migrate(engine, url)
    except RegistryError:
        engine.dispose()
        raise
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc)
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise RegistryError(f"cannot open registry at {mask_url(url)}: {reason}") from exc
    return Registry(engine, url, migrated=migrated)
