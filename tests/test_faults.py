"""Faults injected into real processes: SIGKILL at chosen points of pretraining (checkpoint writes
included), 16 local jobs writing to one registry at once, and racing ``orchestrate grid`` calls.

The kill points are drawn from a seeded RNG (``SSLIGHT_FAULT_SEED``, default 0) so a failure
reproduces; every phase of tests/fault_worker.py appears in each plan.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fault_worker import PHASES, run
from interrupt import checkpoint_tensors
from mlflow_helpers import grid_runs, mlflow_client
from tiny import TINY_RUN

from db import open_registry, resolve_url
from orchestrator.cli import main as orchestrate
from sslight.config.load import config_to_dict
from sslight.engine.checkpoint import load_checkpoint
from sslight.engine.metrics import read_metrics
from sslight.engine.trainer import pretrain

pytestmark = pytest.mark.fault

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EPOCHS, STEPS_PER_EPOCH = 2, 4
TOTAL_STEPS = EPOCHS * STEPS_PER_EPOCH


def kill_plan(seed: int, kills: int = 5) -> list[tuple[str, int]]:
    """``kills`` (phase, checkpoint step) points in increasing step order, every phase present."""
    rng = random.Random(seed)
    phases = [*PHASES, *rng.choices(PHASES, k=kills - len(PHASES))]
    rng.shuffle(phases)
    steps = sorted(rng.sample(range(1, TOTAL_STEPS + 1), kills))
    return list(zip(phases, steps, strict=True))


def expected_resume_step(phase: str, step: int) -> int | None:
    """The step the next start resumes from (None: no checkpoint, it starts over)."""
    if phase == "saved":
        return step
    return step - 1 or None


def _worker(config: Path, spec: str) -> int:
    """Run the fault worker in a fresh process; return its exit code (-9: SIGKILLed).

    A fork server that imported torch and sslight once (and never ran a thread) forks each
    worker: a clean process without paying the imports for every restart."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "sslight.cli", "sslight.engine.trainer"])
    process = context.Process(target=run, args=(str(config), spec))
    process.start()
    process.join(timeout=300)
    if process.is_alive():
        process.kill()
        pytest.fail(f"fault worker {spec} hung")
    return process.exitcode


@pytest.mark.slow
def test_pretraining_killed_at_five_points_finishes_like_an_uninterrupted_run(make_run, tmp_path):
    seed = int(os.environ.get("SSLIGHT_FAULT_SEED", "0"))
    plan = kill_plan(seed)
    settings = {
        "seed": 7,
        "train": {
            "epochs": EPOCHS,
            "max_steps_per_epoch": STEPS_PER_EPOCH,
            "checkpoint_every_steps": 1,
            "deterministic": True,
        },
    }
    pretrain(make_run(tmp_path / "reference", **settings))
    run_dir = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(make_run(run_dir, **settings))))
    checkpoints = run_dir / "checkpoints"

    for phase, step in plan:
        where = f"seed {seed}, kill {phase}@{step} of plan {plan}"
        code = _worker(config, f"{phase}@{step}")
        assert code == -9, f"{where}: not killed (exit code {code})"
        if phase in ("tmp-written", "rotated", "partial"):
            assert list(checkpoints.glob(".last.pt.*.tmp")), f"{where}: killed outside the write"
        state = load_checkpoint(checkpoints)
        resumes_at = None if state is None else state["step"]
        assert resumes_at == expected_resume_step(phase, step), where

    assert _worker(config, "none") == 0, f"seed {seed}, plan {plan}: the last restart failed"
    reference, resumed = checkpoint_tensors(tmp_path / "reference"), checkpoint_tensors(run_dir)
    assert reference.keys() == resumed.keys()
    differing = [k for k in reference if not torch.equal(reference[k], resumed[k])]
    assert not differing, f"seed {seed}, plan {plan}: weights differ in {differing[:5]}"
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "type" not in r]
    assert steps == list(range(TOTAL_STEPS)), "each step logged exactly once across restarts"
    epochs = [r["epoch"] for r in read_metrics(run_dir / "metrics.jsonl") if "type" in r]
    assert epochs == list(range(EPOCHS))
    assert json.loads((run_dir / "result.json").read_text())["pretrain_epochs"] == EPOCHS


def test_the_kill_plan_covers_every_phase_and_moves_forward() -> None:
    for seed in range(20):
        plan = kill_plan(seed)
        assert len(plan) >= 5 and {phase for phase, _ in plan} == set(PHASES)
        steps = [step for _, step in plan]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        assert all(1 <= s <= TOTAL_STEPS for s in steps)


# -- many writers and racing invocations ------------------------------------------------------


def _write_grid(path: Path, workdir: Path, seeds: int, name: str) -> Path:
    base = {
        **TINY_RUN,
        "train": {**TINY_RUN["train"], "max_steps_per_epoch": 1},
        "stages": ["pretrain"],
    }
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "workdir": str(workdir),
                "base": base,
                "axes": {"seed": list(range(seeds))},
            }
        )
    )
    return path


def _job_logs(workdir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (workdir / "jobs").glob("*_log.*"))


@pytest.mark.slow
def test_sixteen_local_jobs_write_to_one_registry_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root, workdir = tmp_path / "runs", tmp_path / "runs" / "many"
    grid = _write_grid(tmp_path / "many.yaml", workdir, 16, "many")
    args = ["grid", str(grid), "--root", str(root), "--executor", "local", "--parallel", "16"]
    assert orchestrate(args) == 0
    # each cell: its pretraining job, then the job that links it into the cell's directory
    assert "submitted 32 of 32 jobs for 16 cells" in capsys.readouterr().out

    with open_registry(resolve_url(None, root)) as registry:
        runs = registry.runs(grid_name="many")
        assert len(runs) == 32, "no run row lost"
        for run in runs:
            assert run.status == "finished", (run.name, run.status, run.error)
            assert run.result and run.result["pretrain_epochs"] == 1, run.name
            [attempt] = registry.attempts(run.key)
            assert attempt.state == "finished" and attempt.ended_at is not None
    logs = _job_logs(workdir)
    assert "database is locked" not in logs
    assert "Traceback" not in logs
    assert "metrics stay in metrics.jsonl" not in logs, "an MLflow call failed"

    # The same 16 jobs tracked to one SQLite MLflow store (next to the registry) at once.
    store = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow_client(store)
    tracked = grid_runs(store, "many")
    assert sorted(r.info.run_id for r in tracked) == sorted(r.mlflow_run_id for r in runs)
    for mlflow_run, run in zip(
        sorted(tracked, key=lambda r: r.info.run_id),
        sorted(runs, key=lambda r: r.mlflow_run_id),
        strict=True,
    ):
        assert mlflow_run.info.status == "FINISHED", run.name
        assert mlflow_run.data.metrics["pretrain_epochs"] == 1, run.name
        if run.kind != "pretrain":
            continue  # the cells' runs are children of their pretraining's
        lines = read_metrics(Path(run.output_dir) / "metrics.jsonl")
        losses = [line["loss"] for line in lines if "loss" in line]
        history = client.get_metric_history(mlflow_run.info.run_id, "loss")
        assert losses and [m.value for m in history] == losses, run.name  # each once
        for line in lines:
            for key, value in line.items():
                if key == "step" or isinstance(value, str):
                    continue
                logged = [m.value for m in client.get_metric_history(mlflow_run.info.run_id, key)]
                assert float(value) in logged, (run.name, key)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_grid_invocations_started_together_submit_each_cell_once(
    tmp_path, request: pytest.FixtureRequest, backend: str
):
    root, workdir = tmp_path / "runs", tmp_path / "runs" / "race"
    grid = _write_grid(tmp_path / "race.yaml", workdir, 4, "race")
    url = (
        resolve_url(None, root) if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    command = [sys.executable, "-m", "orchestrator.cli", "grid", str(grid), "--db", url]
    command += ["--executor", "debug"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs: list[Any] = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    submitted = [int(out.split("submitted ")[1].split(" ")[0]) for out, _ in outputs]
    assert sum(submitted) == 8, submitted  # 4 cells: 4 pretrainings, 4 jobs linking them

    with open_registry(url) as registry:
        runs = registry.runs(grid_name="race")
        assert len(runs) == 8 and {r.status for r in runs} == {"finished"}
        assert all(len(registry.attempts(r.key)) == 1 for r in runs), "a cell ran twice"
