"""The stage plan: a cell's pretraining is one job shared under a registry, its evaluations are
jobs of their own with their stage's resources, and the dry run shows it all before anything
runs (jobs, what each waits for, the GPU-hours they reserve)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_helpers import root_registry

from orchestrator.cli.main import main
from orchestrator.execution.plan import group_stages, plan_grid
from orchestrator.execution.submit import register_grid
from orchestrator.grid.resources import parse_resources
from orchestrator.grid.spec import load_grid
from sslight import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TABLE1, TABLE2 = ROOT / "experiments/table1.yaml", ROOT / "experiments/table2.yaml"


@pytest.fixture
def dataset_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_ROOT", "/data/imagenet")
    monkeypatch.setenv("COCO_ROOT", "/data/coco")
    monkeypatch.delenv("IMAGENET_SEMI_SPLITS", raising=False)


def _dry_json(capsys, path: Path, root: Path) -> list[dict]:
    capsys.readouterr()
    assert main(["grid", str(path), "--dry-run", "--json", "--root", str(root / "runs")]) == 0
    return json.loads(capsys.readouterr().out)


def test_cheap_stages_share_a_job_and_every_other_stage_has_its_own() -> None:
    stages = ["pretrain", "knn", "linear", "semi_1", "semi_10", "detection", "segmentation"]
    assert group_stages(stages) == [
        ("knn", "linear"),
        ("semi_1",),
        ("semi_10",),
        ("detection",),
        ("segmentation",),
    ]
    assert group_stages(["pretrain", "semi_1", "knn"]) == [("semi_1",), ("knn",)]
    assert group_stages(["pretrain"]) == []


def test_each_stage_job_asks_for_its_stages_block_over_the_default() -> None:
    res = parse_resources(
        {
            "default": {"partition": "gpu", "cpus_per_task": 10, "time_min": 60},
            "pretrain": {"gpus_per_node": 8, "tasks_per_node": 8, "time_min": 1440},
            "semi": {"gpus_per_node": 4},
            "semi_1": {"gpus_per_node": 2},
        },
        "g.yaml",
    )
    pretrain = res.for_stages(["pretrain"])
    assert (pretrain.partition, pretrain.cpus_per_task, pretrain.gpus) == ("gpu", 10, 8)
    assert pretrain.gpu_hours == 8 * 24
    assert res.for_stages(["knn", "linear"]) == res.default  # no block: the default
    assert res.for_stages(["semi_10"]).gpus_per_node == 4
    assert res.for_stages(["semi_1"]).gpus_per_node == 2
    flat = parse_resources({"gpus_per_node": 2}, "g.yaml")  # the old form: every stage
    assert flat.for_stages(["pretrain"]) == flat.for_stages(["linear"]) == flat.default


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"default": {"gpus": 1}}, "resources.default.gpus", "unknown key"),
        ({"linear": {"time_min": 0}}, "resources.linear.time_min", "greater than"),
        ({"pretrain": {}, "gpus_per_node": 8}, "resources.gpus_per_node", "resources.default"),
        ({"linear": 4}, "resources.linear", "mapping"),
    ],
)
def test_a_bad_resources_block_is_one_located_error(raw, key, words) -> None:
    with pytest.raises(ConfigError) as info:
        parse_resources(raw, "g.yaml")
    assert info.value.key == key and words in str(info.value)


def test_table2_under_table1s_registry_shares_its_six_pretrainings(
    dataset_roots, tmp_path, capsys
) -> None:
    table1 = _dry_json(capsys, TABLE1, tmp_path)
    with root_registry(tmp_path) as registry:
        keys = register_grid(registry, load_grid(TABLE1))
        for key in keys[:12]:  # table1's pretrainings have run
            registry.set_status(key, "finished")
    table2 = _dry_json(capsys, TABLE2, tmp_path)
    keys = {c["pretrain_key"] for c in table1} | {c["pretrain_key"] for c in table2}
    assert len(keys) == 12
    by_name = {c["name"]: c for c in table1}
    for cell in table2:
        twin = by_name[f"dino-{cell['name']}"]
        assert cell["pretrain_key"] == twin["pretrain_key"]
        pretraining, *evaluations = cell["stage_plan"]
        assert pretraining["kind"] == "pretrain"
        assert pretraining["state"] == "shared (table1: finished)"
        assert not pretraining["submit"] and pretraining["gpu_hours"] == 0
        assert [e["stages"] for e in evaluations] == [
            ["knn", "linear"],
            ["semi_1"],
            ["semi_10"],
            ["detection"],
            ["segmentation"],
        ]
        assert {e["depends_on"] for e in evaluations} == {pretraining["job"]}
        # the evaluations start from table1's pretraining directory
        weights = {e["job"]: e for e in evaluations}
        assert all(e["pretrain_key"] == twin["pretrain_key"] for e in weights.values())


def test_evaluation_jobs_start_from_the_shared_pretraining_directory(
    dataset_roots, tmp_path
) -> None:
    with root_registry(tmp_path) as registry:
        register_grid(registry, load_grid(TABLE1))
        keys = register_grid(registry, load_grid(TABLE2))
        runs = {run.key: run for run in registry.runs(keys=keys)}
    pretrainings = [r for r in runs.values() if r.kind == "pretrain"]
    assert len(pretrainings) == 6 and {r.grid for r in pretrainings} == {"table1"}
    for run in runs.values():
        if run.kind == "pretrain":
            continue
        upstream = runs[run.depends_on]
        assert run.config["init"]["weights"] == upstream.output_dir
        assert "pretrain" not in run.config["stages"]
        assert upstream.output_dir.startswith("runs/table1/pretrain/")


def test_the_dry_run_table_shows_the_plan_and_its_gpu_hours(dataset_roots, tmp_path, capsys):
    capsys.readouterr()
    assert main(["grid", str(TABLE2), "--dry-run", "--root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    # 6 pretrainings x 8 GPUs x 24 h, and per cell 8 GPUs x (4 + 2 + 2 + 10 + 10) h
    assert "36 of 36 jobs to submit (6 pretrainings, 30 evaluations)" in out
    assert f"reserve {6 * 192 + 6 * 8 * 28:g} GPU-hours" in out
    assert "semi_10" in out and "waits for" in out
    assert not (tmp_path / "runs" / "registry.db").exists()  # a dry run registers nothing


def test_plan_keys_are_stable_and_the_cell_keeps_its_key(dataset_roots) -> None:
    grid = load_grid(TABLE2)
    jobs = plan_grid(grid)
    cells = [j for j in jobs if j.kind == "cell"]
    assert [j.key for j in cells] == [c.key for c in grid.cells]
    assert all(j.key.startswith("pretrain-") for j in jobs if j.kind == "pretrain")
    assert [j.key for j in plan_grid(load_grid(TABLE2))] == [j.key for j in jobs]
