"""SSLight lab's SQL registry: grids, runs and attempts (SQLAlchemy 2 + Alembic).

from db import open_registry, resolve_url
registry = open_registry(resolve_url(args.db, workdir))   # migrates to head if needed
registry.claim_for_submission(keys)                        # -> the keys this caller may submit
"""

from __future__ import annotations

from db.models import EXECUTORS
from db.registry import Registry, RegistryError
from db.session import (
    ENV_VAR,
    default_url,
    mask_url,
    open_registry,
    resolve_url,
    sqlite_file_url,
    url_or_sqlite_file,
    with_driver,
)
from db.status import CLAIMABLE, STATUSES, RunStatus
from db.views import AttemptView, GridView, RunView

__all__ = [
    "CLAIMABLE",
    "ENV_VAR",
    "EXECUTORS",
    "STATUSES",
    "AttemptView",
    "GridView",
    "Registry",
    "RegistryError",
    "RunStatus",
    "RunView",
    "default_url",
    "mask_url",
    "open_registry",
    "resolve_url",
    "sqlite_file_url",
    "url_or_sqlite_file",
    "with_driver",
]
