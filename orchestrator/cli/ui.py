"""``orchestrate ui [--port P] [--grid NAME] [--optuna STORAGE]``: the web UIs on 127.0.0.1.

Without ``--optuna`` it serves the MLflow tracking store (``<root>/mlflow.db``, or
``--tracking-uri`` / ``$MLFLOW_TRACKING_URI``; a server URI is only printed) and prints the URL
of the grid's experiment with ``--grid``. With ``--optuna`` it serves a search's Optuna storage
(a JournalStorage file or an RDB URL) in optuna-dashboard. Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sslight import ConfigError, ExitCode


def mlflow_store(uri: str) -> Any:
    """What the dashboards' MLflow UI needs to know of the tracking store at ``uri``."""
    from dashboards.ui import MlflowStore
    from orchestrator.tracking.store import ARTIFACTS_DIRNAME, FAST_HTTP, is_server_uri, sqlite_path

    database = sqlite_path(uri)
    artifacts = database.parent / ARTIFACTS_DIRNAME if database is not None else None
    return MlflowStore(uri, is_server_uri(uri), database, artifacts, FAST_HTTP)


def _ui(args: argparse.Namespace) -> int:
    from dashboards import ui
    from orchestrator.tracking.tracker import resolve_tracking_uri

    try:
        if args.optuna:
            port = ui.OPTUNA_PORT if args.port is None else args.port
            return ui.optuna_dashboard(args.optuna, port)
        uri = resolve_tracking_uri(args.tracking_uri, args.root)
        port = ui.MLFLOW_PORT if args.port is None else args.port
        return ui.mlflow_ui(mlflow_store(uri), port, grid=args.grid)
    except ui.UIError as err:  # bad input: the same message and exit code as any other
        raise ConfigError(err.source, err.key, err.problem) from None
    except RuntimeError as err:  # the server did not come up; its log says why
        print(f"orchestrate ui: {err}", file=sys.stderr)
        return ExitCode.FAILURE


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "ui", parents=[common], help="MLflow UI (or optuna-dashboard) on 127.0.0.1"
    )
    parser.add_argument("--port", type=int, help="default 5000 (MLflow) or 8080 (Optuna)")
    parser.add_argument("--grid", help="print the URL of this grid's experiment")
    parser.add_argument(
        "--optuna", metavar="STORAGE", help="serve this Optuna storage (journal file or RDB URL)"
    )
    parser.set_defaults(handler=_ui)
