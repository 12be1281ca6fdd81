"""Tiny tracked grids and real MLflow servers for the tracking and UI tests."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny import TINY_RUN

from dashboards.ui import mlflow_server_command, start_server, stop_server
from orchestrator.cli import main


def service_missing(reason: str) -> None:
    """In CI (``CI=true``) a missing service fails the test; elsewhere it is skipped."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"required service missing in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_grid(
    folder: Path, name: str = "tiny", policies=("sslight",), epochs: int = 2, **base: Any
) -> Path:
    """A grid of TINY_RUN cells (one per view policy) logging every step; returns its file."""
    run = {**TINY_RUN, **base}
    run["train"] = {**TINY_RUN["train"], "epochs": epochs, "log_every_steps": 1}
    path = folder / f"{name}.yaml"
    spec = {"name": name, "workdir": str(folder / "runs" / name), "base": run}
    spec["axes"] = {"views.policy": list(policies)}
    path.write_text(yaml.safe_dump(spec))
    return path


def run_grid(grid: Path, root: Path, *options: str) -> int:
    """``orchestrate grid`` on the debug executor (cells run in this process)."""
    return main(["grid", str(grid), "--root", str(root), "--executor", "debug", *options])


def mlflow_client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def grid_runs(tracking_uri: str, grid: str) -> list[Any]:
    """The MLflow runs of experiment ``grid``."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(grid)
    assert experiment is not None, f"no MLflow experiment {grid!r} at {tracking_uri}"
    return client.search_runs([experiment.experiment_id])


def history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of metric ``key``, in step order."""
    metrics = mlflow_client(tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in metrics)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free port with its own SQLite store; yields its URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = mlflow_server_command(
        f"sqlite:///{folder / 'server.db'}", port, artifacts_dir=folder / "artifacts"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process = start_server(command, f"{url}/health", log_path=folder / "server.log")
    except (RuntimeError, OSError) as err:
        service_missing(f"mlflow server did not start: {err}")
    try:
        yield url
    finally:
        stop_server(process)


def cell_stderr(root: Path, grid: str) -> str:
    """What the grid's jobs wrote to stderr (submitit's per-job logs)."""
    logs = sorted((root / grid / "jobs").rglob("*.err"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``orchestrate ARGS`` in a fresh process (its own MLflow and logging state)."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CHROMIUM = Path("/usr/bin/chromium")
# Offline, sandbox-less headless Chromium: no GPU, no QUIC, no background fetches or updates.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_cli(*args: str) -> subprocess.Popen:
    """``orchestrate ARGS`` in the background, its stdout readable line by line."""
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "orchestrator.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, prefix: str, timeout_s: float = 240) -> str:
    """The first line of ``process``'s output starting with ``prefix``; fails on exit/timeout."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if line.startswith(prefix):
            return line.strip()
    pytest.fail(f"no line starting with {prefix!r} from {process.args}: {''.join(seen)[-3000:]}")


def interrupt(process: subprocess.Popen, timeout_s: float = 30) -> int:
    """Ctrl-C ``process`` and return its exit code."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
