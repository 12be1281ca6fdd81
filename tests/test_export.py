"""Exports: the evaluated backbone as a plain torchvision / timm state dict plus a JSON sidecar,
written after pretraining, by ``sslight export`` and by ``orchestrate export``; and evaluating
an export or a run through ``init.weights``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision
import yaml
from conftest import tiny_run
from torch import nn

import sslight
from sslight.cli import main as sslight_main
from sslight.config import config_key, config_to_dict, resolve
from sslight.models.backbones import BACKBONES, build_backbone
from sslight.weights.export import write_export


def _stock_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model an export of ``name`` must load into strictly, and an input it accepts: built
    here from torchvision / timm, independently of the spec's ``layout``."""
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(weights=None).features, torch.randn(2, 3, 32, 32)
    if name in ("resnet18", "resnet34"):
        model = getattr(torchvision.models, name)(weights=None)
        model.fc = nn.Identity()
        return model, torch.randn(2, 3, 32, 32)
    if name == "vit_tiny":
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
        return model, torch.randn(1, 3, 224, 224)
    raise AssertionError(f"backbone {name!r}: add the stock model its export loads into")


def _trained_looking(name: str) -> nn.Module:
    """A backbone whose BatchNorm statistics are not the defaults, so buffers must travel too."""
    backbone = build_backbone(name)
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    return backbone.eval()


@pytest.mark.parametrize("name", BACKBONES.names())
def test_an_export_loads_strictly_into_the_stock_model_and_gives_the_same_features(name, tmp_path):
    cfg = tiny_run(tmp_path, backbone=name)
    backbone = _trained_looking(name)
    result = {"knn_top1": 51.5, "stages": {"knn": {"status": "done"}}}
    out = write_export(cfg, backbone, tmp_path / "export" / "backbone.pt", result)

    state = torch.load(out, map_location="cpu", weights_only=True)
    stock, images = _stock_model(name)
    stock.load_state_dict(state, strict=True)
    with torch.no_grad():
        theirs = stock.eval()(images)
        ours = backbone(images)
    if name == "mobilenet_v2":  # ``features`` stops before the global average pool
        theirs = theirs.mean(dim=(2, 3))
    torch.testing.assert_close(theirs, ours)

    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["method"], sidecar["backbone"], sidecar["view_policy"]) == (
        "dino",
        name,
        "sslight",
    )
    assert sidecar["epochs"] == cfg.train.epochs and sidecar["metrics"] == {"knn_top1": 51.5}


def test_a_resnet_export_has_no_fc_so_a_stock_resnet_misses_exactly_fc(tmp_path):
    cfg = tiny_run(tmp_path)
    out = write_export(cfg, _trained_looking("resnet18"), tmp_path / "b.pt", {})
    state = torch.load(out, weights_only=True)

    report = torchvision.models.resnet18(weights=None).load_state_dict(state, strict=False)
    assert sorted(report.missing_keys) == ["fc.bias", "fc.weight"]
    assert report.unexpected_keys == []


def _backbone_of(state: dict, prefix: str = "backbone.") -> dict:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny pretrained ResNet18 run (pretrain + k-NN) and its result."""
    root = tmp_path_factory.mktemp("source")
    torch.set_num_threads(2)
    return root, sslight.run(tiny_run(root, stages=["pretrain", "knn"]))


def test_pretraining_exports_the_student_and_later_stages_refresh_the_metrics(pretrained):
    run, result = pretrained
    exported = torch.load(run / "export" / "backbone.pt", weights_only=True)
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    teacher = _backbone_of(checkpoint["method_state"]["teacher"])
    student = _backbone_of(checkpoint["model"])
    assert exported.keys() == student.keys()
    assert all(torch.equal(exported[k], student[k]) for k in student)  # the seed's choice
    assert not all(torch.equal(exported[k], teacher[k]) for k in teacher)  # DINO: not the EMA

    sidecar = json.loads((run / "export" / "backbone.json").read_text())
    assert sidecar["metrics"]["knn_top1"] == result["knn_top1"]
    assert sidecar["metrics"]["pretrain_loss"] == result["pretrain_loss"]
    cfg = tiny_run(run, stages=["pretrain", "knn"])
    grid_key = config_key(resolve({**config_to_dict(cfg), "output_dir": ""}))
    assert sidecar["config_key"] == grid_key
    assert (sidecar["network"], sidecar["eval_network"]) == ("student", "student")


def _config_file(tmp_path: Path, **overrides) -> Path:
    raw = config_to_dict(tiny_run(tmp_path / "out", **overrides))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sslight_export_writes_the_same_tensors_as_the_pipeline(pretrained, tmp_path, capsys):
    run, _ = pretrained
    out = tmp_path / "copy.pt"
    assert sslight_main(["export", str(run), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"backbone": str(out), "sidecar": str(tmp_path / "copy.json")}

    ours = torch.load(out, weights_only=True)
    pipeline = torch.load(run / "export" / "backbone.pt", weights_only=True)
    assert ours.keys() == pipeline.keys() and all(torch.equal(ours[k], pipeline[k]) for k in ours)


def test_sslight_export_of_a_folder_that_is_no_run_exits_2(tmp_path, capsys):
    assert sslight_main(["export", str(tmp_path)]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["export", "run_dir", "last.pt"])
def test_init_weights_evaluates_an_export_or_a_run_like_the_run_itself(pretrained, tmp_path, where):
    run, source = pretrained
    weights = {
        "export": run / "export" / "backbone.pt",
        "run_dir": run,
        "last.pt": run / "checkpoints" / "last.pt",
    }[where]
    result = sslight.run(tiny_run(tmp_path, stages=["knn"], init={"weights": str(weights)}))

    assert result["knn_top1_k20"] == pytest.approx(source["knn_top1_k20"])
    assert result["knn_top1_k200"] == pytest.approx(source["knn_top1_k200"])
    report = json.loads((tmp_path / "init_weights.json").read_text())
    assert report["tensors"] == len(build_backbone("resnet18").state_dict())
    assert (tmp_path / "config.yaml").is_file()


def test_bad_init_weights_exit_2_naming_the_key_and_the_problem(pretrained, tmp_path, capsys):
    run, _ = pretrained
    export = run / "export" / "backbone.pt"
    bad_shape = torch.load(export, weights_only=True)
    bad_shape["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(bad_shape, tmp_path / "bad_shape.pt")
    cases = {
        str(tmp_path / "missing.pt"): "no such file or directory",
        str(tmp_path): "a directory without checkpoints/last.pt",
        str(tmp_path / "bad_shape.pt"): "conv1.weight is [8, 3, 7, 7] in the file but [64, 3,",
    }
    for weights, problem in cases.items():
        config = _config_file(tmp_path, stages=["knn"], init={"weights": weights})
        assert sslight_main(["run", str(config)]) == 2, weights
        err = capsys.readouterr().err
        assert "init.weights" in err and problem in err, err

    config = _config_file(tmp_path, stages=["knn"])
    argv = ["run", str(config), "backbone=mobilenet_v2", f"init.weights={export}"]
    assert sslight_main(argv) == 2
    assert "holds a resnet18 backbone, but the config's backbone is mobilenet_v2" in (
        capsys.readouterr().err
    )
    assert sslight_main(["run", str(config), "stages=[pretrain]", f"init.weights={export}"]) == 2
    assert "remove 'pretrain' from stages" in capsys.readouterr().err
    assert not (tmp_path / "out" / "result.json").exists()


def test_orchestrate_export_gathers_finished_cells_and_names_unknown_ones(tmp_path, capsys):
    from tiny import TINY_RUN

    from orchestrator.cli import main as orchestrate

    grid = tmp_path / "tiny.yaml"
    workdir = tmp_path / "runs" / "tiny"
    grid.write_text(yaml.safe_dump({"name": "tiny", "workdir": str(workdir), "base": TINY_RUN}))
    root = ["--root", str(tmp_path / "runs")]
    assert orchestrate(["grid", str(grid), *root, "--executor", "debug"]) == 0
    [cell] = [p.name for p in (workdir / "cells").iterdir()]
    capsys.readouterr()

    assert orchestrate(["export", *root, "--grid", "tiny", "--out", str(tmp_path / "out")]) == 0
    gathered = tmp_path / "out" / "tiny" / f"{cell}.pt"
    assert str(gathered) in capsys.readouterr().out
    ours = torch.load(gathered, weights_only=True)
    pipeline = torch.load(workdir / "cells" / cell / "export" / "backbone.pt", weights_only=True)
    assert all(torch.equal(ours[k], pipeline[k]) for k in pipeline)
    assert json.loads(gathered.with_suffix(".json").read_text())["backbone"] == "resnet18"

    assert orchestrate(["export", *root, "no-such-cell"]) == 2
    assert "no cell 'no-such-cell'" in capsys.readouterr().err
