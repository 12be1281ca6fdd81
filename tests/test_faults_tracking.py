"""Faults against MLflow tracking in real processes: the tracking server stopped and restarted
while a cell trains, and a SLURM job preempted twice and timed out once.

What a user relies on: training never waits for MLflow, and once the store answers again the
cell's one MLflow run holds every metrics.jsonl value exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow_helpers import (
    cell_stderr,
    free_port,
    grid_runs,
    mlflow_client,
    service_missing,
    write_grid,
)

from dashboards.ui import mlflow_server_command, start_server, stop_server
from db import open_registry, resolve_url

pytestmark = pytest.mark.fault

OUTAGE_WARNING = "metrics stay in metrics.jsonl"  # CellTracker's warning when a call fails


@pytest.fixture(autouse=True)
def _default_store(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _epoch_lines(path: Path) -> int:
    return sum(1 for line in _lines(path) if line.get("type") == "epoch")


def _wait(predicate, what: str, timeout_s: float = 300, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def _numeric(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _expected_values(lines: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per metric, the (step, value) pairs of metrics.jsonl; a pair repeated within one epoch's
    lines (``epoch`` in a step line and its epoch line) is one MLflow value."""
    expected: dict[str, set[tuple[int, float]]] = {}
    for line in lines:
        for key, value in line.items():
            number = _numeric(value)
            if key != "step" and number is not None:
                expected.setdefault(key, set()).add((line["step"], number))
    return {key: sorted(pairs) for key, pairs in expected.items()}


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _start_mlflow(folder: Path, port: int):
    """``mlflow server`` on ``port`` with the store and artifacts in ``folder`` (kept across
    restarts)."""
    command = mlflow_server_command(
        f"sqlite:///{folder / 'server.db'}", port, artifacts_dir=folder / "artifacts"
    )
    try:
        return start_server(
            command, f"http://127.0.0.1:{port}/health", log_path=folder / f"server-{time.time()}"
        )
    except (RuntimeError, OSError) as err:
        service_missing(f"mlflow server did not start: {err}")


def _paused(pid: int):
    """SIGSTOP ``pid`` for the duration of a ``with`` block (the server changes state while the
    cell cannot race past it, however loaded the machine is)."""

    class Paused:
        def __enter__(self):
            os.kill(pid, signal.SIGSTOP)

        def __exit__(self, *exc):
            os.kill(pid, signal.SIGCONT)

    return Paused()


@pytest.mark.slow
def test_a_tracking_server_restarted_mid_run_ends_with_every_metric_once(tmp_path):
    folder, port = tmp_path / "mlflow", free_port()
    folder.mkdir()
    url = f"http://127.0.0.1:{port}"
    # Epochs take ~0.4 s: the server must be back while at least ten of them are still to run,
    # or a loaded machine lets the cell finish (and end its run) before the restart.
    root, epochs, room = tmp_path / "runs", 16, 10
    grid = write_grid(tmp_path, epochs=epochs, stages=["pretrain"])
    server = _start_mlflow(folder, port)
    command = ["grid", str(grid), "--root", str(root), "--executor", "local"]
    with open(tmp_path / "orchestrate.log", "w") as output:
        cli = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *command, "--tracking-uri", url],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: (root / "registry.db").exists(), "the registry")
        with open_registry(resolve_url(None, str(root))) as registry:
            _wait(lambda: registry.runs() and registry.attempts(registry.runs()[0].key), "a job")
            [cell] = [r for r in registry.runs() if r.kind == "pretrain"]  # the training job
            _wait(lambda: registry.attempts(cell.key)[-1].job_id, "the job's pid")
            pid = int(registry.attempts(cell.key)[-1].job_id)
        metrics = Path(cell.output_dir) / "metrics.jsonl"
        _wait(lambda: _epoch_lines(metrics) >= 1, "the first epoch line")

        with _paused(pid):
            stop_server(server)
            down_at = _epoch_lines(metrics)
        assert down_at + 2 <= epochs - room, "the cell ran too far before the server stopped"
        # one epoch line written while the server is down, then its sync (which fails), then
        # the next epoch line: training went on without the server
        _wait(lambda: _epoch_lines(metrics) >= down_at + 2, "training without the server")
        with _paused(pid):
            back_at = _epoch_lines(metrics)
            server = _start_mlflow(folder, port)
        assert back_at < epochs, "the cell finished before the server came back"
        assert cli.wait(timeout=300) == 0
    finally:
        if cli.poll() is None:
            cli.kill()
        stop_server(server)
        server = _start_mlflow(folder, port)  # read the store through the restarted server

    try:
        with open_registry(resolve_url(None, str(root))) as registry:
            cell = registry.run(cell.key)
        assert cell.status == "finished" and cell.mlflow_run_id
        lines = _lines(metrics)
        assert _epoch_lines(metrics) == epochs, "training continued through the outage"
        assert OUTAGE_WARNING in cell_stderr(root, "tiny"), "the cell never saw the outage"

        # The cell's final sync (forced past the back-off) sent what the outage held back:
        # no `orchestrate sync` needed once the server is back before the cell ends.
        [run] = [r for r in grid_runs(url, "tiny") if r.info.run_id == cell.mlflow_run_id]
        assert run.info.status == "FINISHED"
        client = mlflow_client(url)
        for key, pairs in _expected_values(lines).items():
            assert _history(client, run.info.run_id, key) == pairs, key
    finally:
        stop_server(server)


# -- SLURM: preempted twice, timed out once ----------------------------------------------------


EPOCHS = 16  # of 2 steps: enough left after three interrupts at one checkpoint each


def _checkpoint_mtime(output_dir: Path) -> int:
    path = output_dir / "checkpoints" / "last.pt"
    return path.stat().st_mtime_ns if path.exists() else 0


def test_a_slurm_job_preempted_twice_and_timed_out_once_finishes_as_one_tracked_run(
    slurm_cluster, tmp_path
):
    """Interrupted by signal once each attempt has trained (never after a fixed time), with a
    SLURM limit far above the work and waits that last while the job progresses
    (tests/test_slurm.py says why), so a quiet and a busy machine see the same run."""
    from registry_helpers import root_registry
    from test_slurm import _submit_one, job_progress, run_output_dir, wait_while_progressing

    grid, submission = _submit_one(
        tmp_path, "requeued", {"epochs": EPOCHS, "max_steps_per_epoch": 2, "log_every_steps": 1}
    )
    output_dir = run_output_dir(tmp_path, submission.key)  # the pretraining's directory

    def attempts() -> list:
        with root_registry(tmp_path) as registry:
            return registry.attempts(submission.key)

    def wait(done, what: str) -> None:
        wait_while_progressing(done, lambda: job_progress(tmp_path, submission.key, grid), what)

    # Each interrupt lands while the (requeued) job trains: its attempt is running and it has
    # written a checkpoint since it started.
    for number, timeout in enumerate([False, True, False]):
        started = _checkpoint_mtime(output_dir)
        wait(
            lambda n=number, t=started: (
                len(attempts()) == n + 1
                and attempts()[-1].state == "running"
                and _checkpoint_mtime(output_dir) > t
            ),
            f"attempt {number + 1} training",
        )
        # preemption: SIGTERM then USR2; timeout: USR2 alone (what SLURM sends before the limit)
        submission.job._interrupt(timeout=timeout)
        wait(
            lambda n=number: len(attempts()) >= n + 2 or attempts()[-1].state != "running",
            f"attempt {number + 1} to end",
        )

    wait(lambda: attempts()[-1].state in ("finished", "failed"), "the cell to end")
    with root_registry(tmp_path) as registry:
        run = registry.run(submission.key)
        states = [a.state for a in registry.attempts(submission.key)]
        [only_run] = registry.runs(kinds=("pretrain",))
    assert run.status == "finished", (run.status, run.error, states)
    # the registry records scheduler interrupts, preemption or timeout alike, as "preempted"
    assert states == ["preempted", "preempted", "preempted", "finished"], states
    assert only_run.key == submission.key
    assert "resumed from" in Path(submission.job.paths.stderr).read_text()

    store = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    [mlflow_run] = grid_runs(store, "requeued")  # its cell's job was not submitted
    assert mlflow_run.info.run_id == run.mlflow_run_id and mlflow_run.info.status == "FINISHED"
    # Resumed training rewrites the lines after its checkpoint; each step stays one value.
    lines = _lines(output_dir / "metrics.jsonl")
    client = mlflow_client(store)
    step_lines = [line["step"] for line in lines if "loss" in line]
    epoch_lines = [line["step"] for line in lines if line.get("type") == "epoch"]
    assert step_lines == list(range(2 * EPOCHS)) and len(epoch_lines) == EPOCHS
    for key, steps in (("loss", step_lines), ("lr", step_lines), ("last_loss", epoch_lines)):
        logged = Counter(step for step, _ in _history(client, run.mlflow_run_id, key))
        assert logged == Counter(steps), f"{key}: steps logged twice or missing"
