"""Integration tests against a real SLURM cluster (scripts/slurm-local.sh; `make test` starts it).

Arrays, preemption with requeue, a job killed with scancel found lost and resumed, and a 2-task
data-parallel job rendezvousing through submitit's TorchDistributedEnvironment.

Nothing here depends on the machine's speed: jobs are interrupted by signal once they have
trained a step (never after a fixed time), their SLURM limit is far above their work (an hour
for at most a few dozen tiny steps, so the scheduler never times one out, however slow), and the
tests wait on a job for as long as it makes progress (``wait_while_progressing``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from registry_helpers import root_registry
from tiny import TINY_RUN

from orchestrator.cli import main
from orchestrator.grid.spec import load_grid

TINY = TINY_RUN
# An hour: never reached by this work. It matters beyond the scheduler: submitit counts a USR2 as
# a timeout when the job has run min(0.8 T, T - 10 min) of its limit T, which for T = 10 min is
# from its first second, and it requeues a job 3 times after timeouts; under 10 minutes three
# interrupts were three timeouts and SLURM's own warning on a slow machine was one too many.
RESOURCES = {"time_min": 60, "cpus_per_task": 1, "partition": "debug"}
STALL_S = 240  # a job that shows no progress for this long is stuck, on any machine


def _grid_file(tmp_path: Path, name: str, axes: dict, train: dict | None = None) -> Path:
    base = {**TINY, "train": {**TINY["train"], **(train or {})}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "workdir": str(tmp_path / "runs" / name),
                "base": base,
                "axes": axes,
                "resources": RESOURCES,
            }
        )
    )
    return path


def _wait_for(predicate, timeout: float = 180, every: float = 1.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("timed out waiting for the cluster")


def run_output_dir(tmp_path: Path, key: str) -> Path:
    with root_registry(tmp_path) as registry:
        return Path(registry.run(key).output_dir)


def job_progress(tmp_path: Path, key: str, grid: Any) -> tuple:
    """What changes while a job does anything: its attempts and their states, the logs of the
    grid's jobs, the run's metrics and checkpoint."""
    with root_registry(tmp_path) as registry:
        attempts = tuple((a.job_id, a.state) for a in registry.attempts(key))
        output_dir = Path(registry.run(key).output_dir)
    files = [*Path(grid.workdir, "jobs").rglob("*.err"), output_dir / "metrics.jsonl"]
    checkpoint = output_dir / "checkpoints" / "last.pt"
    return (
        attempts,
        tuple(path.stat().st_size for path in files if path.exists()),
        checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0,
    )


def wait_while_progressing(
    done: Callable[[], bool], progress: Callable[[], Any], what: str, every: float = 0.5
) -> None:
    """Wait until ``done()``; fail only when ``progress()`` stays the same for ``STALL_S``: the
    wait lasts as long as the work does, on a quiet machine or a busy one."""
    last, since = progress(), time.monotonic()
    while not done():
        time.sleep(every)
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > STALL_S:
            pytest.fail(f"{what}: no progress for {STALL_S} s (last seen: {now})")


def _run_status(tmp_path: Path, key: str) -> str:
    with root_registry(tmp_path) as registry:
        return registry.run(key).status


def test_a_grid_of_four_cells_runs_as_a_slurm_array(slurm_cluster, tmp_path, capsys):
    grid = _grid_file(tmp_path, "array", {"views.policy": ["baseline", "sslight"], "seed": [0, 1]})
    root = str(tmp_path / "runs")
    assert main(["grid", str(grid), "--root", root, "--executor", "slurm", "--wait"]) == 0
    assert "submitted 8 of 8 jobs for 4 cells (slurm)" in capsys.readouterr().out
    with root_registry(tmp_path) as registry:
        runs = registry.runs()
        assert [r.status for r in runs] == ["finished"] * 8
        job_ids = {
            kind: [registry.attempts(r.key)[-1].job_id for r in runs if r.kind == kind]
            for kind in ("pretrain", "cell")
        }
    # the 4 pretrainings go out as one array; each k-NN job waits for its own pretraining
    # (afterok on one array task), so those are single jobs
    array_ids = {job_id.split("_")[0] for job_id in job_ids["pretrain"]}
    assert len(array_ids) == 1 and all("_" in i for i in job_ids["pretrain"]), job_ids
    assert len(set(job_ids["cell"])) == 4, job_ids


def _submit_one(tmp_path: Path, name: str, train: dict):
    """A one-cell grid registered, and its pretraining job alone submitted to SLURM."""
    from orchestrator.execution.submit import register_grid, submit

    grid = load_grid(_grid_file(tmp_path, name, {"views.policy": ["sslight"]}, train))
    with root_registry(tmp_path) as registry:
        pretraining, *_ = register_grid(registry, grid)
        [submission] = submit(registry, [pretraining], grid.workdir, "slurm")
    return grid, submission


def _checkpointed(tmp_path: Path, key: str) -> bool:
    return (run_output_dir(tmp_path, key) / "checkpoints" / "last.pt").exists()


def _waiter(tmp_path: Path, grid: Any, key: str) -> Callable[[Callable[[], bool], str], None]:
    """``wait(done, what)``: wait on the cell's jobs while they make progress."""
    return lambda done, what: wait_while_progressing(
        done, lambda: job_progress(tmp_path, key, grid), what
    )


def test_a_preempted_job_requeues_and_finishes_from_its_checkpoint(slurm_cluster, tmp_path):
    grid, submission = _submit_one(tmp_path, "preempt", {"epochs": 8, "max_steps_per_epoch": 2})
    wait = _waiter(tmp_path, grid, submission.key)
    wait(lambda: _checkpointed(tmp_path, submission.key), "the first checkpoint")
    submission.job._interrupt()  # SIGTERM + USR2, as the scheduler does before preempting
    wait(lambda: _run_status(tmp_path, submission.key) == "finished", "the requeued job")
    with root_registry(tmp_path) as registry:
        states = [a.state for a in registry.attempts(submission.key)]
    assert states[0] == "preempted" and states[-1] == "finished", states
    log = Path(submission.job.paths.stderr).read_text()
    assert "resumed from" in log


def test_a_cell_killed_with_scancel_is_lost_and_resume_finishes_it(slurm_cluster, tmp_path, capsys):
    grid, submission = _submit_one(tmp_path, "scancel", {"epochs": 8, "max_steps_per_epoch": 2})
    wait = _waiter(tmp_path, grid, submission.key)
    wait(lambda: _checkpointed(tmp_path, submission.key), "the first checkpoint")
    subprocess.run(["scancel", str(submission.job.job_id)], check=True)

    def lost() -> bool:
        capsys.readouterr()
        main(["status", "--root", str(tmp_path / "runs")])
        return " lost " in capsys.readouterr().out

    _wait_for(lost, timeout=60, every=2)
    with root_registry(tmp_path) as registry:
        assert "CANCELLED" in registry.run(submission.key).error
    assert main(["resume", "--root", str(tmp_path / "runs"), "--executor", "slurm"]) == 0
    wait(lambda: _run_status(tmp_path, submission.key) == "finished", "the resumed job")


def test_a_two_task_job_trains_data_parallel_with_identical_weights(slurm_cluster, tmp_path):
    import cloudpickle
    import ddp_worker  # tests/ is on sys.path under pytest
    import submitit

    cloudpickle.register_pickle_by_value(ddp_worker)  # the job cannot import tests/
    from sslight.config.load import config_to_dict, resolve

    cfg = resolve(
        {**TINY, "train": {**TINY["train"], "epochs": 2}, "output_dir": str(tmp_path / "ddp")}
    )
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(
        tasks_per_node=2, cpus_per_task=1, timeout_min=10, slurm_partition="debug"
    )
    job = executor.submit(ddp_worker.train_rank, config_to_dict(cfg), str(tmp_path))
    job.results()  # one per task; raises if a task failed
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    shared = [
        k for k in rank0 if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    ]
    assert all(torch.equal(rank0[k], rank1[k]) for k in shared)
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2
