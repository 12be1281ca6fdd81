"""Pre-flight at submission: ``orchestrate grid`` and ``orchestrate search`` refuse, with exit 2
and one message naming the grid file, the cell, the config key and the path, a grid whose
ImageNet root, COCO annotations, split files or ``init.weights`` folder is missing, before
anything is registered; a grid on synthetic data, or a dry run, checks nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from registry_helpers import root_registry
from tiny import TINY_RUN

import sslight.inputs
from orchestrator.cli import main
from orchestrator.grid.preflight import preflight
from orchestrator.grid.spec import load_grid
from sslight import ConfigError, input_paths


def _image_folder(root: Path, train=("n01", "n02"), val=("n01", "n02"), images=True) -> Path:
    for split, classes in (("train", train), ("val", val)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            if images:
                (folder / "img_0.JPEG").write_bytes(b"")
    return root


def _grid(tmp_path: Path, base_changes: dict[str, Any], seeds=(0, 1)) -> Path:
    base = copy.deepcopy(TINY_RUN)
    for dotted, value in base_changes.items():
        sslight.set_dotted(base, dotted, value, "test")
    path = tmp_path / "grid.yaml"
    doc = {"name": "pf", "workdir": str(tmp_path / "runs" / "pf"), "base": base}
    path.write_text(yaml.safe_dump({**doc, "axes": {"seed": list(seeds)}}))
    return path


def _refused(tmp_path: Path, argv: list[str], capsys) -> str:
    """Run ``orchestrate argv``; it must exit 2 with one stderr line and record nothing."""
    capsys.readouterr()
    assert main([*argv, "--root", str(tmp_path / "runs"), "--executor", "debug"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    with root_registry(tmp_path) as registry:
        assert registry.grids() == [] and registry.runs() == []
    assert not (tmp_path / "runs" / "pf" / "cells").exists()
    return err


def _imagenet(root: str) -> dict[str, Any]:
    return {"data.dataset": "image_folder", "data.root": root}


CASES = {
    "no_root": (_imagenet("{tmp}/imagenet"), "data.root", "{tmp}/imagenet is not a directory"),
    "no_train": (_imagenet("{tmp}/empty"), "data.root", "{tmp}/empty has no train/ folder"),
    "no_images": (
        _imagenet("{tmp}/hollow"),
        "data.root",
        "{tmp}/hollow/train: none of its 2 class folders holds",
    ),
    "stray_val_class": (
        _imagenet("{tmp}/stray"),
        "data.root",
        "{tmp}/stray/val/n03 is not a class of",
    ),
    "coco": (
        {"stages": ["pretrain", "detection"], "eval.detection.data_root": "{tmp}/coco"},
        "eval.detection.data_root",
        "{tmp}/coco has no annotations/instances_val2017.json",
    ),
    "semi_split": (
        {"stages": ["pretrain", "semi_10"], "eval.semi.split_dir": "{tmp}/splits"},
        "eval.semi.split_dir",
        "{tmp}/splits has no 10percent.txt",
    ),
    "release_folder": (
        {"stages": ["knn"], "init.weights": "{tmp}/releases"},
        "init.weights",
        "{tmp}/releases holds neither dino_r18_sslight.pth.tar nor checkpoints/last.pt",
    ),
}


def _fill(value: Any, tmp: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp))
    return value


def _inputs(tmp: Path) -> None:
    """The partly broken inputs the cases point at."""
    (tmp / "empty").mkdir()
    _image_folder(tmp / "hollow", images=False)
    _image_folder(tmp / "stray", val=("n01", "n03"))
    (tmp / "coco" / "annotations").mkdir(parents=True)
    (tmp / "coco" / "annotations" / "instances_train2017.json").write_text("{}")
    (tmp / "coco" / "train2017").mkdir()
    (tmp / "splits").mkdir()
    (tmp / "splits" / "1percent.txt").write_text("n01/img_0.JPEG\n")
    (tmp / "releases").mkdir()
    (tmp / "releases" / "dino_r34_sslight.pth.tar").write_bytes(b"")  # another cell's file


@pytest.mark.parametrize("case", CASES)
def test_a_missing_input_is_exit_2_naming_file_cell_key_and_path(tmp_path, capsys, case):
    changes, key, problem = CASES[case]
    _inputs(tmp_path)
    grid = _grid(tmp_path, {k: _fill(v, tmp_path) for k, v in changes.items()})
    err = _refused(tmp_path, ["grid", str(grid)], capsys)
    assert f"{grid}: cell s0: {key}: {_fill(problem, tmp_path)}" in err, err
    assert "expected" in err


def test_the_message_says_what_an_image_folder_must_hold(tmp_path, capsys):
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    grid = _grid(tmp_path, _imagenet(str(tmp_path / "imagenet")))
    err = _refused(tmp_path, ["grid", str(grid)], capsys)
    assert err == (
        f"orchestrate: error: {grid}: cell s0: data.root: {tmp_path / 'imagenet'} has no train/ "
        "folder (expected ROOT/train/<class>/*.JPEG|jpg|png and ROOT/val/<class>/*)"
    )


def test_inputs_as_the_jobs_expect_them_pass(tmp_path):
    root = _image_folder(tmp_path / "imagenet")
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (tmp_path / "coco" / "annotations" / f"instances_{split}.json").write_text("{}")
        (tmp_path / "coco" / split).mkdir()
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "10percent.txt").write_text("")
    (tmp_path / "releases").mkdir()
    (tmp_path / "releases" / "dino_r18_sslight.pth.tar").write_bytes(b"")
    changes = {
        **_imagenet(str(root)),
        "stages": ["knn", "semi_10", "detection"],
        "eval.detection.data_root": str(tmp_path / "coco"),
        "eval.semi.split_dir": str(tmp_path / "splits"),
        "init.weights": str(tmp_path / "releases"),
    }
    grid = load_grid(_grid(tmp_path, changes))
    keys = [item.key for item in input_paths(grid.cells[0].config)]
    assert keys == ["data.root", "eval.detection.data_root", "eval.semi.split_dir", "init.weights"]
    preflight(grid)


def test_synthetic_data_and_the_coco_stages_alone_need_no_image_folder(tmp_path):
    assert input_paths(load_grid(_grid(tmp_path, {})).cells[0].config) == []
    detection_only = {
        **_imagenet("/nonexistent"),
        "stages": ["detection"],
        "init.weights": str(tmp_path),
    }
    (tmp_path / "last.pt").write_bytes(b"")
    cfg = load_grid(_grid(tmp_path, detection_only)).cells[0].config
    assert [item.key for item in input_paths(cfg)] == ["init.weights"]


def test_each_distinct_path_is_checked_once_however_many_cells_share_it(tmp_path, monkeypatch):
    root = _image_folder(tmp_path / "imagenet")
    seen: list[Path] = []
    check = sslight.inputs.CHECKS["image_folder"]
    monkeypatch.setitem(
        sslight.inputs.CHECKS, "image_folder", lambda p, n: seen.append(p) or check(p, n)
    )
    preflight(load_grid(_grid(tmp_path, _imagenet(str(root)), seeds=(0, 1, 2, 3))))
    assert seen == [root]


def test_a_dry_run_lists_the_cells_without_checking_paths(tmp_path, capsys):
    grid = _grid(tmp_path, _imagenet(str(tmp_path / "nowhere")))
    assert main(["grid", str(grid), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "grid pf: 2 cells" in capsys.readouterr().out


def test_a_search_on_a_missing_image_folder_is_refused_before_its_study_exists(tmp_path, capsys):
    base = copy.deepcopy(TINY_RUN)
    del base["views"]
    base["data"] = {**base["data"], "dataset": "image_folder", "root": str(tmp_path / "in")}
    space = {
        "scale_boundary": {"low": 0.1, "high": 0.5},
        "local_size": {"low": 64, "high": 160, "step": 16},
        "local_number": {"low": 2, "high": 6},
        "global_global": {"low": 0.05, "high": 0.6},
    }
    path = tmp_path / "search.yaml"
    doc = {"name": "pf", "workdir": str(tmp_path / "runs" / "pf"), "base": base, "space": space}
    path.write_text(yaml.safe_dump({**doc, "budget": {"trials": 2, "epochs": 1}, "pruner": "none"}))
    err = _refused(tmp_path, ["search", str(path)], capsys)
    assert f"{path}: baseline trial: data.root: {tmp_path / 'in'} is not a directory" in err, err
    assert not (tmp_path / "runs" / "pf" / "study.journal").exists()


def test_a_problem_is_a_config_error_that_names_the_grid_file(tmp_path):
    grid = load_grid(_grid(tmp_path, _imagenet(str(tmp_path / "absent"))))
    with pytest.raises(ConfigError) as raised:
        preflight(grid)
    assert (raised.value.source, raised.value.key) == (f"{grid.path}: cell s0", "data.root")
