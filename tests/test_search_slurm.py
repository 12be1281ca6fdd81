"""``orchestrate search --executor slurm``: the workers are SLURM jobs of the real local cluster
(scripts/slurm-local.sh) sharing one Optuna study in the real local PostgreSQL
(scripts/postgres-local.sh), with the registry in PostgreSQL too or in SQLite on the (here local)
shared file system; each trial is a tiny pipeline run. Both services missing under ``CI=true``
fail these tests (tests/conftest.py)."""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from registry_helpers import fresh_database, root_registry
from tiny import TINY_RUN

from db import open_registry
from orchestrator.cli import main

SPACE = {
    "scale_boundary": {"low": 0.1, "high": 0.5},
    "local_size": {"low": 64, "high": 160, "step": 16},
    "local_number": {"low": 2, "high": 6},
    "global_global": {"low": 0.05, "high": 0.6},
}
RESOURCES = {"time_min": 10, "cpus_per_task": 1, "partition": "debug"}


def _search(tmp_path: Path, storage: str, trials: int, epochs: int, **changes) -> Path:
    base = copy.deepcopy(TINY_RUN)
    del base["views"]
    doc = {
        "name": "views",
        "workdir": str(tmp_path / "runs" / "views"),
        "base": base,
        "budget": {"trials": trials, "epochs": epochs},
        "sampler": {"kind": "tpe", "seed": 0},
        "pruner": "none",
        "storage": storage,
        "space": SPACE,
        "resources": RESOURCES,
        **changes,
    }
    path = tmp_path / "views.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def registry_url(postgres_server: str) -> Iterator[str]:
    """A second fresh PostgreSQL database, for the registry (the study has postgres_url's)."""
    with fresh_database(postgres_server, "sslight_r") as url:
        yield url


def _command(path: Path, tmp_path: Path, db: str | None = None) -> list[str]:
    where = ["--db", db] if db else ["--root", str(tmp_path / "runs")]
    return ["search", str(path), *where, "--executor", "slurm", "--workers", "2"]


def _registry(tmp_path: Path, db: str | None):
    return open_registry(db) if db else root_registry(tmp_path)


def _attempts(tmp_path: Path, db: str | None = None) -> dict[str, list]:
    """Registry key -> its attempts, for every trial row of the study."""
    with _registry(tmp_path, db) as registry:
        rows = registry.runs(grid_name="views")
        return {row.key: registry.attempts(row.key) for row in rows}


def _rows(tmp_path: Path, db: str | None = None) -> dict[str, object]:
    with _registry(tmp_path, db) as registry:
        return {row.key: row for row in registry.runs(grid_name="views")}


def test_four_trials_run_to_the_end_on_two_slurm_workers(
    slurm_cluster, postgres_url, registry_url, tmp_path, capsys
):
    path = _search(tmp_path, postgres_url, trials=4, epochs=2)
    assert main(_command(path, tmp_path, db=registry_url)) == 0
    assert "best: trial" in capsys.readouterr().out

    trials = optuna.load_study(study_name="views", storage=postgres_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert [t.user_attrs.get("reference") for t in trials[:2]] == ["baseline", "sslight"]
    assert trials[2].params != trials[3].params
    rows, attempts = _rows(tmp_path, registry_url), _attempts(tmp_path, registry_url)
    for trial in trials:
        key = trial.user_attrs["registry_key"]
        assert rows[key].status == "finished" and rows[key].result["knn_top1"] == trial.value
        [attempt] = attempts[key]
        assert attempt.executor == "slurm" and attempt.state == "finished"
    # two workers, one SLURM array: every trial ran in one of its tasks, and both tasks ended
    # with a result (how many trials each ran depends on when the cluster started it)
    [array] = {a.job_id.split("_")[0] for [a] in attempts.values()}
    assert {a.job_id for [a] in attempts.values()} <= {f"{array}_0", f"{array}_1"}
    jobs = tmp_path / "runs" / "views" / "jobs"
    assert all((jobs / f"{array}_{task}_0_result.pkl").exists() for task in (0, 1))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _interrupt_trial_0(tmp_path: Path, storage: str, interrupt) -> object:
    """Run a 2-trial search on 2 SLURM workers, ``interrupt(job_id, jobs_folder)`` the worker of
    trial 0 once it checkpointed, and check that the search still ends cleanly with trial 0
    retried: same parameters, same directory, resumed from the checkpoint (no epoch twice).
    Return trial 0's registry row."""
    heartbeat = {"interval": 2, "grace": 30}
    path = _search(tmp_path, storage, trials=2, epochs=20, heartbeat=heartbeat)
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(main(_command(path, tmp_path))))
    runner.start()
    workdir = tmp_path / "runs" / "views"
    _wait_for((workdir / "trials/t000/checkpoints/last.pt").exists, 300, "trial 0's checkpoint")
    study = optuna.load_study(study_name="views", storage=storage)
    [attempt] = _attempts(tmp_path)[study.trials[0].user_attrs["registry_key"]]
    interrupt(attempt.job_id, workdir / "jobs")  # mid-trial: 20 epochs, one done
    runner.join(timeout=300)
    assert not runner.is_alive() and codes == [0]

    trials = optuna.load_study(study_name="views", storage=storage).trials
    first = trials[0]
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == first.params and first.user_attrs["reference"] == "baseline"
    assert sorted(t.state for t in trials if t is not first) == [TrialState.COMPLETE] * 2
    rows = _rows(tmp_path)
    dead, rerun = rows[first.user_attrs["registry_key"]], rows[retry.user_attrs["registry_key"]]
    assert dead.status == "cancelled" and f"retried as trial {retry.number}" in dead.error
    assert rerun.status == "finished" and rerun.output_dir == dead.output_dir
    lines = (Path(rerun.output_dir) / "metrics.jsonl").read_text().splitlines()
    epochs = [e["epoch"] for e in map(json.loads, lines) if e.get("type") == "epoch"]
    assert sorted(epochs) == list(range(20))  # resumed from the checkpoint, no epoch twice
    return dead


def test_a_worker_killed_with_scancel_has_its_trial_retried_with_its_params(
    slurm_cluster, postgres_url, tmp_path
):
    def kill(job_id: str, jobs: Path) -> None:  # SIGTERM, then SIGKILL: no word from the job
        subprocess.run(["scancel", job_id], check=True)

    dead = _interrupt_trial_0(tmp_path, postgres_url, kill)
    with root_registry(tmp_path) as registry:
        [attempt] = registry.attempts(dead.key)
    assert attempt.state == "lost" and "CANCELLED" in attempt.error_tail


def test_a_preempted_worker_queues_its_trial_again_and_is_requeued(
    slurm_cluster, postgres_url, tmp_path
):
    import submitit

    preempted: list[str] = []

    def preempt(job_id: str, jobs: Path) -> None:  # what SLURM sends before preempting
        submitit.SlurmJob(folder=jobs, job_id=job_id)._interrupt()
        preempted.append(job_id)

    dead = _interrupt_trial_0(tmp_path, postgres_url, preempt)
    with root_registry(tmp_path) as registry:
        [attempt] = registry.attempts(dead.key)
        assert attempt.state == "preempted" and "retried as trial" in dead.error
    [job_id] = preempted
    log = next((tmp_path / "runs/views/jobs").glob(f"{job_id}_0_log.err")).read_text()
    assert f"Requeued job {job_id}" in log  # the worker itself goes on after the requeue


@pytest.mark.parametrize(
    ("storage", "says"),
    [(None, "the journal file"), ("sqlite:///{tmp}/optuna.db", "an SQLite file is for one")],
)
def test_slurm_workers_refuse_a_storage_of_one_machine(tmp_path, capsys, storage, says):
    storage = storage.format(tmp=tmp_path) if storage else None
    path = _search(tmp_path, storage, trials=2, epochs=1)
    assert main(_command(path, tmp_path)) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert f"{path}: storage: --executor slurm runs workers on other nodes" in err
    assert says in err and "postgresql://" in err
    runs = tmp_path / "runs"
    assert not (runs / "registry.db").exists() and not (runs / "views" / "study.journal").exists()
