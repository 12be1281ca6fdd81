"""Which study storages the workers of an executor can share.

Local and debug workers run on this machine: any storage works. SLURM workers run on the
cluster's nodes and need a database server that every node reaches (``postgresql://...``,
``mysql://...``): a journal file or an SQLite file is shared only through file locks, which
network file systems do not all honour, and neither records heartbeats. With a database, the
trial of a worker the scheduler killed is failed and queued again with its parameters once its
job has ended (reconcile) or its heartbeat is ``heartbeat.grace`` seconds old
(orchestrator/search/study.py).
"""

from __future__ import annotations

import logging

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from orchestrator.search.spec import Search
from sslight import ConfigError

log = logging.getLogger(__name__)

CLUSTER_EXECUTORS = ("slurm",)
THIS_MACHINE = ("localhost", "127.0.0.1", "::1")


def check_storage(search: Search, executor: str) -> None:
    """Refuse (``ConfigError``, exit 2) a storage that the workers of ``executor`` cannot share."""
    if executor not in CLUSTER_EXECUTORS:
        return
    fix = "set storage: to a database server every node reaches (postgresql://user@host/db)"
    if not search.uses_database:
        raise ConfigError(
            search.source,
            "storage",
            f"--executor {executor} runs workers on other nodes; the journal file "
            f"{search.storage} is for one machine (no heartbeats, file locks); {fix}",
        )
    try:
        url = make_url(search.storage)
    except ArgumentError as err:
        raise ConfigError(search.source, "storage", f"not a database URL: {err}") from None
    if url.get_backend_name() == "sqlite":
        raise ConfigError(
            search.source,
            "storage",
            f"--executor {executor} runs workers on other nodes; an SQLite file is for one "
            f"machine (its locks do not hold on network file systems); {fix}",
        )
    if url.host in THIS_MACHINE:
        log.warning(
            "search %s: the study's database host %s is this machine; SLURM workers on other "
            "machines cannot reach it (fine when the cluster is this machine)",
            search.name,
            url.host,
        )
