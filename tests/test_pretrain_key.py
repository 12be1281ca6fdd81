"""``pretrain_key``: cells that would train the same network share it, and only those.

Table 2 of the paper reports the transfer of Table 1's networks, so under one registry the two
grids hold 12 pretrainings, not 18; the key ignores evaluation, paths and logging, and a tiny run
shows that what it ignores really leaves the weights unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from interrupt import checkpoint_tensors

from orchestrator.grid.spec import load_grid
from sslight import pretrain_key
from sslight.engine.trainer import pretrain

ROOT = Path(__file__).resolve().parents[1]
DRY_JSON = ("--dry-run", "--json")


@pytest.fixture
def dataset_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGENET_ROOT", "/data/imagenet")
    monkeypatch.setenv("COCO_ROOT", "/data/coco")


def test_table2_pretrains_nothing_that_table1_does_not(dataset_roots) -> None:
    table1 = {c.name: c.pretrain_key for c in load_grid(ROOT / "experiments/table1.yaml").cells}
    table2 = {c.name: c.pretrain_key for c in load_grid(ROOT / "experiments/table2.yaml").cells}
    assert len(set(table1.values()) | set(table2.values())) == 12
    for name, key in table2.items():
        assert table1[f"dino-{name}"] == key, name
    assert len(set(table1.values())) == len(table1), "Table 1's cells all train different networks"


def test_the_dry_run_json_carries_each_cells_pretrain_key(dataset_roots) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "grid", "experiments/table2.yaml", *DRY_JSON],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cells = json.loads(out)
    assert all(len(cell["pretrain_key"]) == 16 for cell in cells)
    assert len({cell["pretrain_key"] for cell in cells}) == 6


@pytest.mark.parametrize(
    ("override", "same"),
    [
        ({"stages": ["pretrain"]}, True),
        ({"eval": {"knn": {"k": [5]}}}, True),
        ({"data": {"num_workers": 2, "val_subset": 50}}, True),
        ({"data": {"views_device": "cpu"}}, True),  # where the views are made
        ({"train": {"log_every_steps": 7, "checkpoint_every_steps": 1, "progress": True}}, True),
        ({"swav": {"epsilon": 0.1}}, True),  # another method's section
        ({"train": {"epochs": 2}}, False),
        ({"views": {"policy": "baseline"}}, False),
        ({"dino": {"out_dim": 32}}, False),
        ({"seed": 1}, False),
        ({"backbone": "mobilenet_v2"}, False),
        ({"data": {"train_subset": 16}}, False),
    ],
)
def test_the_key_counts_exactly_what_trains(make_run, tmp_path, override, same) -> None:
    base = make_run(tmp_path / "a")
    other = make_run(tmp_path / "b", **override)
    assert (pretrain_key(base) == pretrain_key(other)) is same


def test_the_monitor_counts_once_it_may_end_pretraining(make_run, tmp_path) -> None:
    stop = {"train": {"stop_on_collapse": True}}
    a = make_run(tmp_path / "a", **stop)
    b = make_run(tmp_path / "b", **stop, eval={"knn": {"k": [5]}})
    assert pretrain_key(a) != pretrain_key(b)


def test_what_the_key_ignores_leaves_the_weights_bit_identical(make_run, tmp_path) -> None:
    """Two runs that differ only in what the key ignores (workers, logging, checkpoints, the
    evaluation settings) train the same tensors."""
    a = make_run(tmp_path / "a", train={"deterministic": True})
    b = make_run(
        tmp_path / "b",
        train={"deterministic": True, "log_every_steps": 2, "checkpoint_every_steps": 1},
        data={"num_workers": 2},
        eval={"knn": {"k": [5]}},
        stages=["pretrain"],
    )
    assert pretrain_key(a) == pretrain_key(b)
    pretrain(a)
    pretrain(b)
    ta, tb = checkpoint_tensors(tmp_path / "a"), checkpoint_tensors(tmp_path / "b")
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
