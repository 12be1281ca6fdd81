"""Stage jobs on the real SLURM cluster (scripts/slurm-local.sh; `make test` starts it).

A grid's pretraining and evaluations go out together, the evaluations held by SLURM itself
(``--dependency=afterok``); a second grid evaluates the first one's pretraining without
pretraining again, its linear evaluation a 2-task data-parallel job; a grid whose pretraining
fails leaves its evaluation held, never started, and ``resume`` after the fix runs the chain.
Every wait lasts as long as the jobs make progress (``wait_while_progressing``), never a fixed
time.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from registry_helpers import root_registry
from test_slurm import RESOURCES, wait_while_progressing
from test_stage_jobs import _image_folder
from tiny import TINY_RUN

from orchestrator.cli import main
from sslight.config.load import deep_merge


def _grid(tmp_path: Path, name: str, resources=None, **base) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {
        "name": name,
        "workdir": str(tmp_path / "runs" / name),
        "base": deep_merge(TINY_RUN, base),
        "axes": {"views.policy": ["sslight"]},
        "resources": resources or RESOURCES,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _orchestrate(tmp_path: Path, *args: str) -> int:
    return main([*args, "--root", str(tmp_path / "runs"), "--executor", "slurm"])


def _rows(tmp_path: Path, capsys, grid: str) -> list[dict]:
    capsys.readouterr()
    main(["status", "--root", str(tmp_path / "runs"), "--grid", grid, "--json"])
    return json.loads(capsys.readouterr().out)


def _run_grid(tmp_path: Path, path: Path, capsys) -> str:
    assert _orchestrate(tmp_path, "grid", str(path), "--wait") == 0
    return capsys.readouterr().out


def _job_ids(tmp_path: Path, key: str) -> list[str]:
    with root_registry(tmp_path) as registry:
        return [a.job_id for a in registry.attempts(key) if a.job_id]


def _squeue_reason(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


def test_a_second_grid_evaluates_the_first_ones_pretraining_with_a_two_task_linear_job(
    slurm_cluster, tmp_path, capsys
):
    out = _run_grid(tmp_path, _grid(tmp_path, "a"), capsys)
    assert "submitted 2 of 2 jobs for 1 cells (slurm)" in out
    [a] = _rows(tmp_path, capsys, "a")
    assert a["stages"] == {"pretrain": "finished", "knn": "finished"}

    two_tasks = {"default": RESOURCES, "linear": {**RESOURCES, "tasks_per_node": 2}}
    linear = {"epochs": 1, "batch_size": 16, "cached_features": True}
    b = _grid(
        tmp_path, "b", two_tasks, stages=["pretrain", "knn", "linear"], eval={"linear": linear}
    )
    out = _run_grid(tmp_path, b, capsys)
    assert "submitted 1 of 2 jobs for 1 cells (slurm)" in out  # no pretraining job
    [b_row] = _rows(tmp_path, capsys, "b")
    assert b_row["pretrain_key"] == a["pretrain_key"] and b_row["knn_top1"] == a["knn_top1"]
    assert b_row["stages"] == {"pretrain": "finished", "knn": "finished", "linear": "finished"}
    assert len(_job_ids(tmp_path, f"pretrain-{a['pretrain_key']}")) == 1  # pretrained once
    assert len(_job_ids(tmp_path, b_row["key"])) == 1  # one evaluation job, no chain behind it
    result = json.loads((Path(b_row["output_dir"]) / "result.json").read_text())
    assert result["stages"]["linear"]["world_size"] == 2  # data-parallel over the job's 2 tasks
    assert 0 <= result["linear_top1"] <= 100


def test_a_failed_pretraining_leaves_its_evaluation_held_and_resume_runs_the_chain(
    slurm_cluster, tmp_path, capsys
):
    images = tmp_path / "images"
    _image_folder(images, readable=False)
    c = _grid(tmp_path, "c", data={"dataset": "image_folder", "root": str(images)})
    assert _orchestrate(tmp_path, "grid", str(c)) == 0  # the whole chain at once, no waiting
    [row] = _rows(tmp_path, capsys, "c")
    pretraining = f"pretrain-{row['pretrain_key']}"
    [held] = _job_ids(tmp_path, row["key"])

    def failed() -> bool:
        return _rows(tmp_path, capsys, "c")[0]["stages"]["pretrain"] == "failed"

    wait_while_progressing(failed, lambda: _job_ids(tmp_path, pretraining), "pretraining")
    # SLURM itself holds the evaluation: it never started
    wait_while_progressing(
        lambda: "DependencyNeverSatisfied" in _squeue_reason(held),
        lambda: _squeue_reason(held),
        "dependency",
    )
    [row] = _rows(tmp_path, capsys, "c")
    assert row["stages"] == {"pretrain": "failed", "knn": "blocked"}
    assert f"blocked: pretrain {row['pretrain_key']} failed" in row["error"]
    with root_registry(tmp_path) as registry:
        assert [a.state for a in registry.attempts(row["key"])] == ["submitted"]  # never ran
        assert registry.run(row["key"]).stage is None  # no stage of it ever ran

    _image_folder(images, readable=True)  # the fix
    capsys.readouterr()
    assert _orchestrate(tmp_path, "resume", "--grid", "c", "--wait") == 0
    assert "resumed 2 jobs" in capsys.readouterr().out
    assert _squeue_reason(held) == ""  # the held job was cancelled, not left behind
    [row] = _rows(tmp_path, capsys, "c")
    assert row["stages"] == {"pretrain": "finished", "knn": "finished"}
    assert row["error"] is None and row["status"] == "finished"
