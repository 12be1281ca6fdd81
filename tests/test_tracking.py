"""MLflow tracking of grid cells against real stores: SQLite files and a real ``mlflow server``.

A cell of these grids (stages pretrain + knn) is two jobs: its shared pretraining, one MLflow run
with the training curves, and the cell's k-NN job, the pretraining run's child.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from mlflow_helpers import (
    cell_stderr,
    free_port,
    grid_runs,
    history,
    mlflow_client,
    mlflow_server,
    run_cli,
    run_grid,
    write_grid,
)

from db import open_registry, resolve_url
from orchestrator.cli import main
from orchestrator.execution.job import CellJob
from orchestrator.tracking.cursor import SyncCursor, advance, pending_lines
from sslight.engine.metrics import read_metrics


@pytest.fixture(autouse=True)
def _default_store(monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _store(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def _row(root: Path, kind: str) -> Any:
    """The one registry row of ``kind`` (``pretrain`` or ``cell``) of a one-cell grid."""
    with open_registry(resolve_url(None, str(root))) as registry:
        [run] = [r for r in registry.runs() if r.kind == kind]
    return run


def _pretraining(root: Path) -> Any:
    """The pretraining job of a one-cell grid: the run whose directory holds the curves."""
    return _row(root, "pretrain")


def _cell(root: Path) -> Any:
    """The cell of a one-cell grid: its evaluations and the link to its pretraining."""
    return _row(root, "cell")


def _mlflow_run(store: str, run_id: str) -> Any:
    [run] = [r for r in grid_runs(store, "tiny") if r.info.run_id == run_id]
    return run


class Tracked(NamedTuple):
    root: Path
    pretraining: Any  # registry rows
    cell: Any
    pretrain_run: Any  # MLflow runs
    cell_run: Any


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Tracked:
    """One finished 2-epoch cell tracked in ``<root>/mlflow.db`` (system metrics every second)."""
    folder = tmp_path_factory.mktemp("tracked")
    root = folder / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        assert run_grid(write_grid(folder), root) == 0
    pretraining, cell = _pretraining(root), _cell(root)
    store = _store(root)
    return Tracked(
        root,
        pretraining,
        cell,
        _mlflow_run(store, pretraining.mlflow_run_id),
        _mlflow_run(store, cell.mlflow_run_id),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow tracking server, shared by this module's tests (it takes ~20 s to start)."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


def test_a_cell_is_one_run_of_its_grid_experiment_with_tags_and_config_params(tracked):
    cell, run = tracked.cell, tracked.cell_run
    assert run.info.run_name == cell.name and run.info.status == "FINISHED"
    tags = run.data.tags
    assert {k: tags[k] for k in ("method", "backbone", "view_policy", "grid", "cell_key")} == {
        "method": "dino",
        "backbone": "resnet18",
        "view_policy": "sslight",
        "grid": "tiny",
        "cell_key": cell.key,
    }
    params = run.data.params
    assert params["train.epochs"] == "2" and params["views.policy"] == "sslight"
    assert params["views.global_crops.scale"] == json.dumps(
        cell.config["views"]["global_crops"]["scale"]
    )
    assert params["output_dir"] == cell.output_dir


def test_the_shared_pretraining_is_the_parent_run_of_its_cell(tracked):
    pretrain_run, cell_run = tracked.pretrain_run, tracked.cell_run
    assert len(grid_runs(_store(tracked.root), "tiny")) == 2
    assert cell_run.data.tags["mlflow.parentRunId"] == pretrain_run.info.run_id
    assert pretrain_run.info.status == "FINISHED"
    key = tracked.cell.pretrain_key
    assert key and tracked.pretraining.pretrain_key == key
    assert pretrain_run.data.tags["pretrain_key"] == cell_run.data.tags["pretrain_key"] == key
    assert "loss" in pretrain_run.data.metrics and "loss" not in cell_run.data.metrics


def test_every_metrics_line_is_logged_at_its_step_and_stage_results_last(tracked):
    store, pretrain_run = _store(tracked.root), tracked.pretrain_run
    lines = read_metrics(Path(tracked.pretraining.output_dir) / "metrics.jsonl")
    step_lines = [line for line in lines if "loss" in line]
    assert len(step_lines) == 4
    run_id = pretrain_run.info.run_id
    assert history(store, run_id, "loss") == [(r["step"], r["loss"]) for r in step_lines]
    assert history(store, run_id, "lr") == [(r["step"], r["lr"]) for r in step_lines]
    epoch_lines = [line for line in lines if line.get("type") == "epoch"]
    assert history(store, run_id, "last_loss") == [(r["step"], r["last_loss"]) for r in epoch_lines]
    result = json.loads((Path(tracked.cell.output_dir) / "result.json").read_text())
    metrics = tracked.cell_run.data.metrics  # the latest value of each
    assert metrics["knn_top1"] == result["knn_top1"]
    assert metrics["knn_top1_k200"] == result["knn_top1_k200"]
    assert metrics["stages.knn.seconds"] == result["stages"]["knn"]["seconds"]


def test_artifacts_and_system_metrics_are_logged(tracked):
    root = tracked.root
    client = mlflow_client(_store(root))
    for row, run in ((tracked.pretraining, tracked.pretrain_run), (tracked.cell, tracked.cell_run)):
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "result.json"} <= top, row.key
        local = Path(client.download_artifacts(run.info.run_id, "result.json", str(root)))
        assert json.loads(local.read_text()) == json.loads(
            (Path(row.output_dir) / "result.json").read_text()
        )
    run_id = tracked.pretrain_run.info.run_id
    exported = {a.path for a in client.list_artifacts(run_id, "export")}
    assert "export/backbone.pt" in exported
    assert any(key.startswith("system/cpu") for key in tracked.pretrain_run.data.metrics)


def test_a_resumed_cell_continues_its_mlflow_run_and_sends_nothing_twice(tmp_path):
    root = tmp_path / "runs"
    assert run_grid(write_grid(tmp_path), root) == 0
    pretraining, cell = _pretraining(root), _cell(root)
    store = _store(root)
    losses = history(store, pretraining.mlflow_run_id, "loss")
    assert len(losses) == 4

    # The knn stage is lost and the cell failed: `orchestrate resume` reruns that stage alone.
    result_path = Path(cell.output_dir) / "result.json"
    result = json.loads(result_path.read_text())
    del result["stages"]["knn"], result["knn_top1"]
    result_path.write_text(json.dumps(result))
    with open_registry(resolve_url(None, str(root))) as registry:
        registry.set_status(cell.key, "failed", error="lost its knn stage")
    assert main(["resume", "--root", str(root), "--executor", "debug"]) == 0

    assert len(grid_runs(store, "tiny")) == 2
    run = _mlflow_run(store, cell.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["knn_top1"] == json.loads(result_path.read_text())["knn_top1"]
    assert history(store, pretraining.mlflow_run_id, "loss") == losses
    with open_registry(resolve_url(None, str(root))) as registry:
        assert len(registry.attempts(pretraining.key)) == 1  # not trained again

    # Training resumed from a checkpoint rewrites the lines after it: steps already sent are
    # not sent again, new steps are.
    metrics_path = Path(pretraining.output_dir) / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    kept = [line for line in lines if line["step"] < 2]
    rewritten = [
        {**line, **({"loss": line["loss"] + 1} if "loss" in line else {})}
        for line in lines
        if line["step"] >= 2
    ]
    new = {"step": 4, "epoch": 2, "loss": 0.5}
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in [*kept, *rewritten, new]))
    assert main(["sync", "--root", str(root)]) == 0
    assert history(store, pretraining.mlflow_run_id, "loss") == [*losses, (4, 0.5)]
    assert main(["sync", "--root", str(root), "--grid", "tiny"]) == 0
    assert history(store, pretraining.mlflow_run_id, "loss") == [*losses, (4, 0.5)]


def test_two_local_cells_in_parallel_share_one_sqlite_store(tmp_path):
    root = tmp_path / "runs"
    grid = write_grid(tmp_path, policies=("baseline", "sslight"), epochs=1)
    done = run_cli("grid", str(grid), "--root", str(root), "--executor", "local", "--parallel", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = grid_runs(_store(root), "tiny")
    assert all(r.info.status == "FINISHED" for r in runs)
    pretrainings = [r for r in runs if r.data.tags.get("job_kind") == "pretrain"]
    cells = [r for r in runs if "job_kind" not in r.data.tags]
    assert sorted(r.data.tags["view_policy"] for r in pretrainings) == ["baseline", "sslight"]
    assert sorted(r.data.tags["view_policy"] for r in cells) == ["baseline", "sslight"]
    assert all(len(history(_store(root), r.info.run_id, "loss")) == 2 for r in pretrainings)
    logs = cell_stderr(root, "tiny")
    assert "database is locked" not in logs
    assert "metrics stay in metrics.jsonl" not in logs  # no tracking call failed


def test_a_dead_server_does_not_fail_the_cell_and_sync_delivers_later(tmp_path, server):
    root = tmp_path / "runs"
    dead = f"http://127.0.0.1:{free_port()}"
    assert run_grid(write_grid(tmp_path), root, "--tracking-uri", dead) == 0
    pretraining, cell = _pretraining(root), _cell(root)
    assert cell.status == pretraining.status == "finished"
    assert cell.mlflow_run_id is None and pretraining.mlflow_run_id is None

    done = run_cli("sync", "--root", str(root), "--tracking-uri", server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"synced 2 runs to {server}" in done.stdout
    runs = grid_runs(server, "tiny")
    assert {r.info.run_id for r in runs} == {
        _pretraining(root).mlflow_run_id,
        _cell(root).mlflow_run_id,
    }
    assert all(r.info.status == "FINISHED" for r in runs)
    run_id = _pretraining(root).mlflow_run_id
    lines = read_metrics(Path(pretraining.output_dir) / "metrics.jsonl")
    expected = [(r["step"], r["loss"]) for r in lines if "loss" in r]
    assert history(server, run_id, "loss") == expected
    artifacts = {a.path for a in mlflow_client(server).list_artifacts(run_id)}
    assert {"config.yaml", "result.json", "export"} <= artifacts
    cell_run = _mlflow_run(server, _cell(root).mlflow_run_id)
    assert "knn_top1" in cell_run.data.metrics

    again = run_cli("sync", "--root", str(root), "--tracking-uri", server)
    assert again.returncode == 0
    assert history(server, run_id, "loss") == expected
    assert len(grid_runs(server, "tiny")) == 2


def test_sync_to_a_dead_server_reports_it_and_exits_1(tmp_path, capsys):
    root = tmp_path / "runs"
    from orchestrator.execution.submit import register_grid
    from orchestrator.grid.spec import load_grid

    grid = load_grid(write_grid(tmp_path))
    with open_registry(resolve_url(None, str(root))) as registry:
        register_grid(registry, grid)
    output_dir = Path(_pretraining(root).output_dir)
    output_dir.mkdir(parents=True)
    (output_dir / "metrics.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    dead = f"http://127.0.0.1:{free_port()}"
    assert main(["sync", "--root", str(root), "--tracking-uri", dead]) == 1
    out = capsys.readouterr().out
    assert f"not synced: {_pretraining(root).name}: MlflowException" in out
    assert _pretraining(root).mlflow_run_id is None


def test_sync_of_an_unknown_grid_is_bad_input(tmp_path, capsys):
    assert main(["sync", "--root", str(tmp_path / "runs"), "--grid", "nope"]) == 2
    assert "--grid: no grid named 'nope'" in capsys.readouterr().err


def test_a_requeued_job_keeps_tracking_the_same_store():
    job = CellJob("k", {}, "sqlite:///r.db", "slurm", tracking_uri="http://mlflow:5000")
    job.tracking_tags = {"trial": "3"}
    requeued = job.checkpoint().function
    assert (requeued.tracking_uri, requeued.tracking_tags) == ("http://mlflow:5000", {"trial": "3"})


def _write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_the_sync_cursor_sends_appended_lines_once_and_skips_a_rewound_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    first = [{"step": 0, "loss": 3.0}, {"step": 1, "loss": 2.0}, {"step": 1, "type": "epoch"}]
    _write(path, first)
    cursor = SyncCursor()
    sent = pending_lines(path, cursor)
    assert sent.records == first
    advance(cursor, sent)
    assert pending_lines(path, cursor).records == []

    with open(path, "a") as handle:  # appended, and a line still being written
        handle.write(json.dumps({"step": 2, "loss": 1.5}) + "\n" + '{"step": 3, "lo')
    sent = pending_lines(path, cursor)
    assert sent.records == [{"step": 2, "loss": 1.5}]
    advance(cursor, sent)

    # resumed from the checkpoint at step 1: steps >= 1 rewritten with other values, then more
    _write(
        path,
        [
            first[0],
            {"step": 1, "loss": 2.1},
            {"step": 1, "type": "epoch"},
            {"step": 2, "loss": 1.6},
            {"step": 3, "loss": 1.2},
        ],
    )
    assert pending_lines(path, cursor).records == [{"step": 3, "loss": 1.2}]
