"""The MLflow end of tracking: tracking URIs, a client that fails fast, safe SQLite writes.

A dead tracking server must cost a cell seconds, not minutes: MLflow's HTTP retries and timeout
are shortened (unless the environment sets them). Many local cells share one SQLite ``mlflow.db``;
MLflow's store opens deferred transactions that read then write, which SQLite can refuse at once
with "database is locked" (a lock upgrade that would deadlock skips the busy timeout), and two
first opens race to create the schema. Every call on an SQLite store therefore holds an
exclusive ``flock`` on ``<db>.lock`` and is retried when SQLite still reports a lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from db import sqlite_file_url, url_or_sqlite_file

log = logging.getLogger(__name__)

T = TypeVar("T")
DB_FILENAME = "mlflow.db"
ARTIFACTS_DIRNAME = "mlartifacts"
# MLflow's defaults retry for minutes (7 retries, backoff 2, 120 s timeout).
FAST_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
LOCKED_RETRIES = 8
# The MLflow UI opens such experiments on their runs (model training), not on GenAI traces.
TRAINING_KIND = {"mlflow.experimentKind": "custom_model_development"}


def default_tracking_uri(root: str | os.PathLike) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute root>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env:
        return env
    return sqlite_file_url(os.path.join(os.path.expanduser(os.fspath(root)), DB_FILENAME))


def resolve_tracking_uri(cli_value: str | None, root: str | os.PathLike) -> str:
    """The ``--tracking-uri`` value (a path without ``://`` is an SQLite file), else the default."""
    if cli_value and cli_value.strip():
        return url_or_sqlite_file(cli_value)
    return default_tracking_uri(root)


def registry_tracking_uri(registry_url: str, workdir: str | os.PathLike) -> str:
    """The default store of a registry: ``mlflow.db`` beside an SQLite registry file (the
    ``--root``), else beside the grid's ``workdir``; ``$MLFLOW_TRACKING_URI`` wins."""
    registry_file = sqlite_path(registry_url)
    return default_tracking_uri(registry_file.parent if registry_file else workdir)


def sqlite_path(uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def _locked(err: Exception) -> bool:
    return "database is locked" in str(err).lower()


class TrackingStore:
    """One MLflow tracking store, opened on first use; every call serialised on SQLite."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.db = sqlite_path(uri)
        self._client: Any = None
        for name, value in FAST_HTTP.items():
            os.environ.setdefault(name, value)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        if self.db is None:
            yield
            return
        self.db.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.db}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def client(self) -> Any:
        return self.open()

    def open(self) -> Any:
        """The MLflow client, opening the store on first use."""
        if self._client is None:
            from mlflow import MlflowClient

            with self._lock():  # a fresh SQLite file gets its schema here, once
                client = MlflowClient(tracking_uri=self.uri)
                if self.db is not None:
                    client.search_experiments(max_results=1)  # opens (and creates) the store
            self._client = client
        return self._client

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under the store lock, retried while SQLite reports a lock."""
        self.open()
        for attempt in range(LOCKED_RETRIES):
            try:
                with self._lock():
                    return fn(*args, **kwargs)
            except Exception as err:
                if not _locked(err) or attempt == LOCKED_RETRIES - 1:
                    raise
                log.debug("mlflow store locked; retrying (%s)", err)
            time.sleep(random.uniform(0.05, 0.2) * 2**attempt)
        raise AssertionError("unreachable")

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created if missing (its artifacts next to the store)."""
        from mlflow.exceptions import MlflowException

        found = self.call(self.client.get_experiment_by_name, name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.call(self.client.restore_experiment, found.experiment_id)
            return found.experiment_id
        location = None
        if self.db is not None:
            location = (self.db.parent / ARTIFACTS_DIRNAME / _slug(name)).resolve().as_uri()
        try:
            return self.call(
                self.client.create_experiment, name, artifact_location=location, tags=TRAINING_KIND
            )
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = self.call(self.client.get_experiment_by_name, name)  # created concurrently
            if found is None:
                raise
            return found.experiment_id

    def get_run(self, run_id: str) -> Any | None:
        """The run ``run_id``, or None when this store has no such (live) run."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.call(self.client.get_run, run_id)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return None if run.info.lifecycle_stage == "deleted" else run
