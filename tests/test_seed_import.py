"""Importing the seed repo's released checkpoints: synthetic files in exactly its layout (DDP
prefixes, positional CNN encoders, a pickled config object of a class unknown at load time) load
with identical tensors; a pickle that calls code is refused without running it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_run

import sslight
from sslight.cli import main as sslight_main
from sslight.config import ConfigError, config_to_dict
from sslight.methods import METHODS
from sslight.weights.init_weights import load_init_weights
from sslight.weights.safe_unpickle import load_untrusted
from sslight.weights.seed_import import SeedImportError, import_seed_backbone, released_name

# Written in a subprocess that can import ``seedcfg`` (a stand-in for yacs), which this test
# process cannot: the files carry a pickled object of a class unknown when they are loaded.
WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import timm
    import torch
    import torchvision
    from torch import nn
    from seedcfg import CfgNode

    torch.manual_seed(0)
    out = sys.argv[1]

    def encoder(arch):
        model = getattr(torchvision.models, arch)(weights=None)
        if arch.startswith("resnet"):
            return nn.Sequential(*list(model.children())[:-2]), model
        return model.features, model

    def noisy(state):
        return {k: v + torch.rand_like(v.float()).to(v.dtype) for k, v in state.items()}

    for method, arch, network, legacy in (
        ("DINO", "resnet18", "student", False),
        ("SWAV", "mobilenet_v2", "network", False),
        ("MOCO", "mobilenet_v2", "encoder_q", True),
        ("DINO", "vit_tiny", "student", False),
    ):
        if arch == "vit_tiny":
            vit = timm.create_model("vit_tiny_patch16_224", num_classes=0)
            backbone = noisy(vit.state_dict())
            prefix = f"module.{network}.backbone."
            expected = backbone
        else:
            seq, model = encoder(arch)
            backbone = noisy(seq.state_dict())
            prefix = f"module.{network}.backbone.encoder."
            names = [k for k in model.state_dict() if not k.startswith(("fc.", "classifier."))]
            expected = dict(zip(names, backbone.values()))
        state = {prefix + k: v for k, v in backbone.items()}
        state[f"module.{network}.head.mlp.0.weight"] = torch.randn(8, 4)
        if method == "DINO":
            state.update({"module.teacher.backbone." + k: v * 2 for k, v in backbone.items()})
        if method == "MOCO":
            state.update({"module.encoder_k.backbone.encoder." + k: v for k, v in backbone.items()})
        state["module.classifier.weight"] = torch.randn(10, 4)
        config = CfgNode(
            {"SSL_METHOD": method, "MODEL": CfgNode({"BACKBONE_ARCH": arch}), "SEEN": {1, 2}}
        )
        checkpoint = {
            "config": config,
            "epoch": 200,
            "steps": 250200,
            "state_dict": state,
            "optimizer": {"param_groups": [{"lr": np.float64(0.0048)}], "state": {}},
        }
        name = f"{method.lower()}_{arch}"
        torch.save(checkpoint, f"{out}/{name}.pth.tar", _use_new_zipfile_serialization=not legacy)
        torch.save(expected, f"{out}/{name}.expected.pt")
    """
)

SEEDCFG = textwrap.dedent(
    """
    class CfgNode(dict):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.__dict__["__immutable__"] = True
    """
)


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seed")
    module_dir = tmp_path_factory.mktemp("seedcfg")
    (module_dir / "seedcfg.py").write_text(SEEDCFG)
    env = {**os.environ, "PYTHONPATH": str(module_dir), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", WRITER, str(out)], check=True, env=env, capture_output=True
    )
    return out


@pytest.mark.parametrize(
    "name, backbone, network",
    [
        ("dino_resnet18", "resnet18", "module.student.backbone.encoder"),
        ("swav_mobilenet_v2", "mobilenet_v2", "module.network.backbone.encoder"),
        ("moco_mobilenet_v2", "mobilenet_v2", "module.encoder_q.backbone.encoder"),  # legacy
        ("dino_vit_tiny", "vit_tiny", "module.student.backbone"),
    ],
)
def test_a_seed_checkpoint_imports_with_identical_tensors(seed_files, name, backbone, network):
    weights, report = load_init_weights(str(seed_files / f"{name}.pth.tar"), backbone)

    expected = torch.load(seed_files / f"{name}.expected.pt", weights_only=True)
    assert weights.keys() == expected.keys()  # the stock torchvision / timm names, in order
    assert all(torch.equal(weights[k], v) for k, v in expected.items())
    assert report["kind"] == "seed checkpoint" and report["network"] == network
    assert report["not_loaded"]["module.classifier"] == 1
    assert report["seed_config"]["BACKBONE_ARCH"] == backbone


def test_the_pickled_config_object_becomes_a_plain_dict(seed_files):
    loaded = load_untrusted(seed_files / "dino_resnet18.pth.tar")
    config = loaded["config"]
    assert type(config) is dict and type(config["MODEL"]) is dict
    assert config == {"SSL_METHOD": "DINO", "MODEL": {"BACKBONE_ARCH": "resnet18"}, "SEEN": {1, 2}}
    assert float(loaded["optimizer"]["param_groups"][0]["lr"]) == 0.0048


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth.tar"
    state = {"module.student.backbone.encoder.0.weight": torch.zeros(1)}
    torch.save({"config": _Payload(marker), "state_dict": state}, evil)

    with pytest.raises(ConfigError, match=r"refused: the pickle calls (posix|os)\.system"):
        load_init_weights(str(evil), "resnet18")
    assert not marker.exists()

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(tiny_run(tmp_path / "out", stages=["knn"]))))
    assert sslight_main(["run", str(config), f"init.weights={evil}"]) == 2
    assert "nothing from the file was run" in capsys.readouterr().err
    assert not marker.exists()


def test_a_seed_checkpoint_of_another_architecture_is_refused_by_shape(seed_files):
    with pytest.raises(ConfigError, match="trained with backbone 'resnet18', not 'resnet34'"):
        load_init_weights(str(seed_files / "dino_resnet18.pth.tar"), "resnet34")

    checkpoint = load_untrusted(seed_files / "swav_mobilenet_v2.pth.tar")
    del checkpoint["config"]  # no architecture name: the tensors alone must refuse
    torch.save(checkpoint, seed_files / "unnamed.pth.tar")
    with pytest.raises(ConfigError, match=r"unnamed.pth.tar: seed checkpoint: the encoder has"):
        load_init_weights(str(seed_files / "unnamed.pth.tar"), "resnet18")


def test_sslight_run_evaluates_a_folder_of_releases_by_cell(seed_files, tmp_path):
    releases = tmp_path / "released"
    releases.mkdir()
    (releases / released_name("dino", "resnet18", "sslight")).symlink_to(
        seed_files / "dino_resnet18.pth.tar"
    )
    cfg = tiny_run(tmp_path / "run", stages=["knn"], init={"weights": str(releases)})

    result = sslight.run(cfg)

    assert 0 <= result["knn_top1"] <= 100
    report = json.loads((tmp_path / "run" / "init_weights.json").read_text())
    assert report["path"] == str(releases / "dino_r18_sslight.pth.tar")
    assert report["method"] == "dino" and report["tensors"] == 120


def test_the_prefixes_looked_for_are_those_the_method_specs_declare() -> None:
    state = {"module.unknown.backbone.encoder.0.weight": torch.zeros(1)}
    with pytest.raises(SeedImportError, match="no CNN backbone in its state_dict") as err:
        import_seed_backbone({"state_dict": state}, "resnet18", {})
    declared = [METHODS.get(name).seed_prefixes.get("cnn") for name in METHODS.names()]
    assert all(layout[0] in str(err.value) for layout in declared if layout)
    assert "module.unknown.backbone" in str(err.value)
