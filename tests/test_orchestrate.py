"""``orchestrate`` end to end on the local and debug executors, against a real SQLite registry."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from registry_helpers import root_registry
from tiny import TINY_RUN

from orchestrator.cli import main

TINY = TINY_RUN


def _grid(tmp_path: Path, name: str = "tiny", policies=("baseline", "sslight")) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "workdir": str(tmp_path / "runs" / name),
                "base": TINY,
                "axes": {"views.policy": list(policies)},
            }
        )
    )
    return path


def _status(tmp_path: Path, capsys) -> list[dict]:
    capsys.readouterr()
    main(["status", "--root", str(tmp_path / "runs"), "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_a_grid_runs_every_cell_and_a_second_invocation_submits_nothing(tmp_path, capsys, executor):
    grid = _grid(tmp_path)
    root = str(tmp_path / "runs")
    assert main(["grid", str(grid), "--root", root, "--executor", executor]) == 0
    out = capsys.readouterr().out
    assert "submitted 4 of 4 jobs for 2 cells" in out

    rows = _status(tmp_path, capsys)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    # one pretraining job and one evaluation job per cell, each once
    assert all(0 <= r["knn_top1"] <= 100 and r["attempts"] == 2 for r in rows)
    assert all(r["stages"] == {"pretrain": "finished", "knn": "finished"} for r in rows)
    with root_registry(tmp_path) as registry:
        for run in registry.runs():
            if run.kind == "cell":
                assert (
                    json.loads((Path(run.output_dir) / "result.json").read_text())["knn_top1"]
                    == run.result["knn_top1"]
                )
            [attempt] = registry.attempts(run.key)
            assert (attempt.executor, attempt.state) == (executor, "finished")
            assert attempt.job_id and attempt.node and attempt.ended_at

    assert main(["grid", str(grid), "--root", root, "--executor", executor]) == 0
    assert "submitted 0 of 4 jobs for 2 cells" in capsys.readouterr().out


def test_two_concurrent_invocations_never_submit_a_cell_twice(tmp_path):
    grid = _grid(tmp_path, policies=("baseline", "sslight"))
    root = str(tmp_path / "runs")
    command = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "grid",
        str(grid),
        "--root",
        root,
        "--executor",
        "local",
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    outs = [first.communicate(timeout=300)[0], second.communicate(timeout=300)[0]]
    submitted = sum(int(out.split("submitted ")[1].split(" ")[0]) for out in outs)
    assert submitted == 4  # two cells, each a pretraining and an evaluation job
    with root_registry(tmp_path) as registry:
        assert all(len(registry.attempts(r.key)) == 1 for r in registry.runs())
        assert {r.status for r in registry.runs()} == {"finished"}


def test_a_failing_cell_is_recorded_and_resume_finishes_it(tmp_path, capsys, monkeypatch):
    # A dataset the job fetches itself (pre-flight checks only the folders a grid names) is
    # missing where the job runs: neither under data.root, nor packaged, nor downloadable.
    monkeypatch.setenv("SSLIGHT_FASHION_MNIST_DEB_DIR", "/nonexistent")
    grid = _grid(tmp_path, policies=("sslight",))
    root = str(tmp_path / "runs")
    assert (
        main(
            [
                "grid",
                str(grid),
                "--root",
                root,
                "--executor",
                "debug",
                "data.root=/nonexistent",
                "data.dataset=fashion_mnist",
                "data.download=false",
            ]
        )
        == 1
    )
    [row] = _status(tmp_path, capsys)
    assert row["status"] == "failed" and "/nonexistent" in row["error"]
    assert row["stages"] == {"pretrain": "failed", "knn": "blocked"}
    assert f"blocked: pretrain {row['pretrain_key']} failed" in row["error"]
    with root_registry(tmp_path) as registry:
        [attempt] = registry.attempts(f"pretrain-{row['pretrain_key']}")
        assert attempt.state == "failed" and "DataRootError" in attempt.error_tail
        assert registry.attempts(row["key"]) == []  # the evaluation never started


def test_a_job_that_died_without_a_word_is_lost_and_resume_finishes_it(tmp_path, capsys):
    grid = _grid(tmp_path, policies=("sslight",))
    root = str(tmp_path / "runs")
    # Register the cell and fake a submission whose process is already gone.
    from orchestrator.execution.submit import register_grid
    from orchestrator.grid.spec import load_grid

    loaded = load_grid(grid)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with root_registry(tmp_path) as registry:
        register_grid(registry, loaded)
        [key] = registry.claim_for_submission([f"pretrain-{loaded.cells[0].pretrain_key}"])
        registry.start_attempt(key, "local", job_id=str(dead.pid), state="running")
        registry.set_status(key, "running", stage="pretrain")

    [row] = _status(tmp_path, capsys)
    assert row["status"] == "lost" and f"local process {dead.pid} is gone" in row["error"]

    assert main(["resume", "--root", root, "--executor", "debug"]) == 0
    [row] = _status(tmp_path, capsys)
    # the lost pretraining, its rerun, then the evaluation
    assert row["status"] == "finished" and row["attempts"] == 3


def test_cancel_stops_a_running_local_cell(tmp_path, capsys):
    slow = {**TINY, "train": {**TINY["train"], "epochs": 50, "max_steps_per_epoch": 4}}
    path = tmp_path / "slow.yaml"
    path.write_text(
        yaml.safe_dump({"name": "slow", "workdir": str(tmp_path / "runs" / "slow"), "base": slow})
    )
    root = str(tmp_path / "runs")
    runner = threading.Thread(target=main, args=(["grid", str(path), "--root", root],))
    runner.start()
    deadline = time.time() + 120
    while time.time() < deadline:
        rows = _status(tmp_path, capsys) if (tmp_path / "runs" / "registry.db").exists() else []
        if rows and rows[0]["status"] == "running":
            break
        time.sleep(0.5)
    assert main(["cancel", "--root", root]) == 0
    runner.join(timeout=120)
    [row] = _status(tmp_path, capsys)
    assert row["status"] == "cancelled"
    with root_registry(tmp_path) as registry:
        pretraining = f"pretrain-{row['pretrain_key']}"
        assert registry.attempts(pretraining)[-1].state == "cancelled"
        assert registry.attempts(row["key"]) == []  # its evaluation never started
    assert row["stages"] == {"pretrain": "cancelled", "knn": "cancelled"}


def test_bad_grid_input_exits_2_with_one_message(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nbase: {method: dino}\naxes: {backbone: [resnet50]}\n")
    assert main(["grid", str(path), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml" in err[0] and "resnet50" in err[0]


@pytest.mark.parametrize("command", ["status", "resume", "cancel", "report", "export", "sync"])
def test_an_unknown_grid_name_exits_2_listing_the_known_grids(tmp_path, capsys, command):
    root = str(tmp_path / "runs")
    assert main(["grid", str(_grid(tmp_path, policies=("sslight",))), "--root", root]) == 0
    before = _status(tmp_path, capsys)
    assert main([command, "--root", root, "--grid", "tinny"]) == 2
    err = capsys.readouterr().err
    assert "--grid" in err and "no grid named 'tinny'; known grids: tiny" in err
    assert _status(tmp_path, capsys) == before, "nothing recorded changes"
