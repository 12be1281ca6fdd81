"""What the ``orchestrate`` commands share: the registry and MLflow store they were pointed at
(``--root``, ``--db``, ``--tracking-uri``), and the status table they end with."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from db import RunStatus
from sslight import ConfigError, ExitCode


def open_registry_for(args: argparse.Namespace) -> Any:
    """The registry of ``--db`` (else ``<root>/registry.db``), migrated to the current schema."""
    from db import open_registry, resolve_url

    registry = open_registry(resolve_url(args.db, args.root))
    if registry.migrated:
        logging.getLogger(__name__).info("registry %s: schema migrated to head", registry)
    return registry


@contextmanager
def existing_registry(args: argparse.Namespace) -> Iterator[Any]:
    """The registry of ``--db``/``--root`` if there is one, else None: a dry run reads what is
    registered and creates nothing."""
    from db import resolve_url

    url = resolve_url(args.db, args.root)
    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).exists():
        yield None
        return
    with open_registry_for(args) as registry:
        yield registry


def tracking_uri_for(args: argparse.Namespace) -> str:
    """The MLflow store: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``<root>/mlflow.db``."""
    from orchestrator.tracking.tracker import resolve_tracking_uri

    return resolve_tracking_uri(args.tracking_uri, args.root)


def add_file_and_overrides(parser: argparse.ArgumentParser, file_help: str, example: str) -> None:
    """The positional ``FILE [key=value ...]`` of ``grid`` and ``search``: a YAML file and the
    dotted overrides applied to every run config it makes (``example`` says to what)."""
    parser.add_argument("file", help=file_help)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=example)


def require_known_grid(registry: Any, name: str | None) -> None:
    """``--grid NAME`` must name a registered grid: else one ConfigError (exit 2) that lists the
    grids the registry knows. None (no ``--grid``) means every grid."""
    if name is None:
        return
    known = [grid.name for grid in registry.grids()]
    if name not in known:
        listing = ", ".join(known) if known else "none (run `orchestrate grid FILE` first)"
        raise ConfigError(
            "command line", "--grid", f"no grid named {name!r}; known grids: {listing}"
        )


def print_status(registry: Any, grid: str | None, as_json: bool) -> int:
    """Reconcile and print the cells' table; FAILURE when a cell failed or was lost."""
    from orchestrator.execution.reconcile import reconcile
    from orchestrator.execution.status import format_rows, status_rows

    reconcile(registry, grid)
    rows = status_rows(registry, grid)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(format_rows(rows) if rows else "no cells registered")
    broken = (RunStatus.FAILED, RunStatus.LOST, "blocked")
    return ExitCode.FAILURE if any(r["status"] in broken for r in rows) else ExitCode.OK
