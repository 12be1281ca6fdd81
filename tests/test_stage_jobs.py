"""Stage jobs end to end (in-process executor): a pretraining runs once for every grid that
shares it, an evaluation whose pretraining failed never starts and says why, and ``resume``
after the fix runs the chain to its end. The same on the real SLURM cluster: tests/test_slurm.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from mlflow import MlflowClient
from registry_helpers import root_registry
from tiny import TINY_RUN
from torchvision.io import write_png

from orchestrator.cli.main import main
from sslight.config.load import deep_merge


def _grid(tmp_path: Path, name: str, **base) -> Path:
    path = tmp_path / f"{name}.yaml"
    doc = {
        "name": name,
        "workdir": str(tmp_path / "runs" / name),
        "base": deep_merge(TINY_RUN, base),
        "axes": {"views.policy": ["baseline", "sslight"]},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _status(tmp_path: Path, capsys, grid: str) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(["status", "--root", str(tmp_path / "runs"), "--grid", grid, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _grid_cmd(tmp_path: Path, path: Path) -> list[str]:
    return ["grid", str(path), "--root", str(tmp_path / "runs"), "--executor", "debug"]


def test_a_second_grid_evaluates_the_first_grids_pretraining_without_pretraining(
    tmp_path, capsys
) -> None:
    a = _grid(tmp_path, "a")
    assert main(_grid_cmd(tmp_path, a)) == 0
    assert "submitted 4 of 4 jobs for 2 cells" in capsys.readouterr().out
    _, rows_a = _status(tmp_path, capsys, "a")

    b = _grid(tmp_path, "b", stages=["pretrain", "knn", "linear"], eval={"linear": {"epochs": 1}})
    assert main(_grid_cmd(tmp_path, b)) == 0
    # the two shared pretrainings are finished: only the evaluations go out
    assert "submitted 2 of 4 jobs for 2 cells" in capsys.readouterr().out
    _, rows_b = _status(tmp_path, capsys, "b")
    assert [r["status"] for r in rows_b] == ["finished", "finished"]
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        assert row_b["pretrain_key"] == row_a["pretrain_key"]
        assert row_b["stages"] == {"pretrain": "finished", "knn": "finished", "linear": "finished"}
        assert row_b["knn_top1"] == row_a["knn_top1"]  # the very same weights
        cell = Path(row_b["output_dir"])
        shared = json.loads((cell / "result.json").read_text())["stages"]["pretrain"]
        assert shared["status"] == "done" and "/runs/a/pretrain/" in shared["shared"]
        assert (cell / "pretrain" / "checkpoints" / "last.pt").is_file()  # the link
        assert not (cell / "checkpoints" / "last.pt").exists()  # no copy of the weights

    with root_registry(tmp_path) as registry:  # MLflow: the pretraining once, cells its children
        runs = {r.key: r for r in registry.runs()}
        for row in rows_b:  # pretrained once, by grid a
            assert len(registry.attempts(f"pretrain-{row['pretrain_key']}")) == 1
    client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")  # not the global URI
    for row in rows_b:
        cell = client.get_run(runs[row["key"]].mlflow_run_id)
        pretraining = runs[f"pretrain-{row['pretrain_key']}"]
        assert cell.data.tags["mlflow.parentRunId"] == pretraining.mlflow_run_id
        assert cell.data.tags["pretrain_key"] == row["pretrain_key"]
        assert "loss" in client.get_run(pretraining.mlflow_run_id).data.metrics


def _image_folder(root: Path, readable: bool) -> None:
    for split, count in (("train", 8), ("val", 4)):
        for k, name in enumerate(["n01", "n02"]):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                path = folder / f"img{i}.png"
                if readable:
                    write_png(torch.full((3, 36, 40), 60 * k + 5 * i, dtype=torch.uint8), str(path))
                else:
                    path.write_bytes(b"not a png")


def test_a_failed_pretraining_blocks_its_evaluations_and_resume_runs_the_chain(
    tmp_path, capsys
) -> None:
    images = tmp_path / "images"
    _image_folder(images, readable=False)
    c = _grid(tmp_path, "c", data={"dataset": "image_folder", "root": str(images)})
    assert main(_grid_cmd(tmp_path, c)) == 1
    _, rows = _status(tmp_path, capsys, "c")
    for row in rows:
        assert row["status"] == "failed"
        assert row["stages"] == {"pretrain": "failed", "knn": "blocked"}
        assert f"blocked: pretrain {row['pretrain_key']} failed" in row["error"]
    with root_registry(tmp_path) as registry:
        assert all(registry.attempts(row["key"]) == [] for row in rows)  # never started

    _image_folder(images, readable=True)  # the fix
    capsys.readouterr()
    assert main(["resume", "--root", str(tmp_path / "runs"), "--executor", "debug"]) == 0
    assert "resumed 4 jobs" in capsys.readouterr().out
    _, rows = _status(tmp_path, capsys, "c")
    assert all(r["stages"] == {"pretrain": "finished", "knn": "finished"} for r in rows)
    assert all(r["error"] is None for r in rows)
