"""Launch the web UIs on 127.0.0.1: MLflow (tracked runs) and optuna-dashboard (searches).

``mlflow_ui`` serves a tracking store with ``mlflow server`` (an SQLite file made by
``orchestrate``; a server URI is only printed, it already has a UI), ``optuna_dashboard`` an
Optuna storage (a JournalStorage file or an RDB URL). Both print the URL once the server
answers and run until Ctrl-C. Bad input raises ``UIError`` naming the option and the problem.

The dashboards import the registry only: what the MLflow UI needs to know of the tracking store
(``MlflowStore``: a server or an SQLite file, where its artifacts live, the HTTP settings) is given
by the caller, ``orchestrate ui``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
MLFLOW_PORT = 5000
OPTUNA_PORT = 8080
START_TIMEOUT_S = 180.0  # `mlflow server` answers ~20 s after start on an idle 2-core machine
SOURCE = "command line"
# mlflow server forks eight job-queue consumers for GenAI features (judges, trace rollups) that
# tracking never uses; off unless the environment turns them on.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class UIError(ValueError):
    """Bad input to a UI command: ``source: key: problem`` (the command exits 2)."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class MlflowStore:
    """An MLflow tracking store as the UI needs it: its URI, whether a server answers it (then it
    has a UI of its own), its SQLite file and artifacts folder (else None), and the environment
    that keeps HTTP calls to a server short."""

    uri: str
    is_server: bool = False
    database: Path | None = None
    artifacts_dir: Path | None = None
    http_env: Mapping[str, str] = field(default_factory=dict)


def executable(name: str) -> str:
    """A console script of this environment (next to the interpreter), else from ``PATH``."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise UIError(SOURCE, name, f"{name!r} is not installed in this environment")
    return found


def check_port_free(port: int, option: str = "--port") -> None:
    """Raise UIError when ``port`` cannot be bound on 127.0.0.1."""
    if not 0 < port < 65536:
        raise UIError(SOURCE, option, f"{port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as err:
            raise UIError(
                SOURCE, option, f"port {port} on {HOST} is in use ({err.strerror}); pick another"
            ) from None


def mlflow_server_command(
    backend_uri: str, port: int, artifacts_dir: str | Path | None = None
) -> list[str]:
    """``mlflow server`` on 127.0.0.1 for ``backend_uri``; one worker (these are small boxes).
    Artifacts uploaded through the server land in ``artifacts_dir``."""
    command = [executable("mlflow"), "server", "--backend-store-uri", backend_uri]
    command += ["--host", HOST, "--port", str(port), "--workers", "1"]
    if artifacts_dir is not None:
        command += ["--artifacts-destination", Path(artifacts_dir).resolve().as_uri()]
    return command


def answers(url: str) -> bool:
    """Whether an HTTP server answers ``url`` with a success."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_server(
    command: Sequence[str], health_url: str, timeout_s: float = START_TIMEOUT_S, log_path=None
) -> subprocess.Popen:
    """Start ``command`` and wait until ``health_url`` answers; raise RuntimeError (with the
    server's output) if it exits or stays silent."""
    if log_path is None:
        log_path = Path(tempfile.mkstemp(prefix=f"{Path(command[0]).name}-", suffix=".log")[1])
    env = {**SERVER_ENV, **os.environ}
    with open(log_path, "wb") as output:
        # its own process group: stopping it stops the workers it forks (uvicorn, gunicorn)
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if answers(health_url):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.5)
    stop_server(process)
    tail = Path(log_path).read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{command[0]} did not answer {health_url} (log {log_path}): {tail}")


def stop_server(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a server started here (SIGTERM, then SIGKILL after ``grace_s``)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_until_interrupted(process: subprocess.Popen) -> int:
    """Wait for the server; Ctrl-C or SIGTERM stops it and returns 0."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        stop_server(process)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"server exited with code {code}", file=sys.stderr)
    return 1


def experiment_id(tracking_uri: str, name: str) -> str:
    """The id of experiment (grid) ``name`` in the store; UIError if there is none."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(name)
    if found is None or found.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        known = ", ".join(names) or "none yet"
        raise UIError(
            SOURCE, "--grid", f"no MLflow experiment named {name!r} (experiments: {known})"
        )
    return found.experiment_id


def experiment_path(experiment: str) -> str:
    """The UI path of an experiment's runs table (the training view, not GenAI traces)."""
    return f"/#/experiments/{experiment}/runs?workflowType=machine_learning" if experiment else ""


def _server_experiment_id(store: MlflowStore, name: str) -> str:
    from mlflow.exceptions import MlflowException

    tracking_uri = store.uri
    for key, value in store.http_env.items():
        os.environ.setdefault(key, value)
    try:
        return experiment_id(tracking_uri, name)
    except MlflowException as err:  # unreachable: the URL is still the one to open
        print(f"(could not ask {tracking_uri} for experiment {name!r}: {err})", file=sys.stderr)
        return ""


def mlflow_ui(
    store: MlflowStore, port: int = MLFLOW_PORT, grid: str | None = None, log_path=None
) -> int:
    """Serve ``store`` with the MLflow UI until Ctrl-C; print its (experiment) URL."""
    tracking_uri = store.uri
    if store.is_server:
        path = experiment_path(_server_experiment_id(store, grid)) if grid else ""
        print(f"MLflow UI (served by the tracking server): {tracking_uri.rstrip('/')}{path}")
        return 0
    database = store.database
    if database is not None and not database.exists():
        raise UIError(
            SOURCE,
            "--root/--tracking-uri",
            f"no MLflow store at {database}: run a grid first, or point --root or "
            "--tracking-uri at an existing store",
        )
    check_port_free(port)
    path = experiment_path(experiment_id(tracking_uri, grid)) if grid else ""
    artifacts = store.artifacts_dir
    url = f"http://{HOST}:{port}"
    print(f"starting the MLflow UI for {tracking_uri} (about 20 s) ...", flush=True)
    process = start_server(
        mlflow_server_command(tracking_uri, port, artifacts), f"{url}/health", log_path=log_path
    )
    print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
    if grid:
        print(f"grid {grid}: {url}{path}", flush=True)
    return _serve_until_interrupted(process)


def optuna_command(storage: str, port: int) -> list[str]:
    """``optuna-dashboard`` on 127.0.0.1 for an RDB URL or a JournalStorage file."""
    command = [executable("optuna-dashboard"), "--host", HOST, "--port", str(port)]
    if "://" in storage:
        return [*command, storage]
    path = Path(storage).expanduser().resolve()
    return [*command, "--storage-class", "JournalFileStorage", str(path)]


def optuna_dashboard(storage: str, port: int = OPTUNA_PORT, log_path=None) -> int:
    """Serve an Optuna storage with optuna-dashboard until Ctrl-C; print its URL."""
    journal = storage.removeprefix("sqlite:///") if storage.startswith("sqlite:///") else storage
    if "://" not in journal and not Path(journal).expanduser().is_file():
        raise UIError(
            SOURCE,
            "--optuna",
            f"{storage}: no such Optuna storage file (give a JournalStorage file or an RDB "
            "URL such as sqlite:///search.db)",
        )
    check_port_free(port)
    url = f"http://{HOST}:{port}"
    print(f"starting optuna-dashboard for {storage} ...", flush=True)
    process = start_server(optuna_command(storage, port), f"{url}/", log_path=log_path)
    print(f"Optuna dashboard: {url}/dashboard  (Ctrl-C stops it)", flush=True)
    return _serve_until_interrupted(process)
