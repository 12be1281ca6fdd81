"""A new backbone is one spec: a toy CNN declared below pretrains, is evaluated and exported.

Nothing else in the project names it: it is registered for the test and removed afterwards.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

import sslight
from sslight.config import ConfigError
from sslight.models.backbones import BACKBONES, BackboneSpec, ExportLayout, detection_backbones
from sslight.weights.export import export_run


# --- the whole backbone --------------------------------------------------------------------------
def toy_cnn(*, drop_path_rate: float = 0.0) -> nn.Module:
    """Two strided convolutions and a global average pool: ``[B, 3, H, W]`` → ``[B, 16]``."""
    del drop_path_rate  # no stochastic depth in a CNN
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


TOY_CNN = BackboneSpec(
    name="toy_cnn",
    family="cnn",  # DINO's CNN recipe and view presets
    embed_dim=16,
    patch_size=None,
    build=toy_cnn,
    layout=ExportLayout(
        prefix="", load_into="toy_cnn() of tests/test_toy_backbone.py", build=toy_cnn
    ),
    detection=None,  # no feature maps: the COCO stages are refused
)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def toy_registered():
    with BACKBONES.temporarily(TOY_CNN.name, TOY_CNN) as spec:
        yield spec
    assert TOY_CNN.name not in BACKBONES


def test_the_toy_backbone_pretrains_runs_knn_and_exports(toy_registered, make_run, tmp_path):
    run_dir = tmp_path / "run"
    cfg = make_run(run_dir, backbone="toy_cnn", stages=["pretrain", "knn"])
    assert cfg.views.global_crops.size == 32  # the CNN family's preset applies

    result = sslight.run(cfg)

    assert result["stages"]["pretrain"]["status"] == result["stages"]["knn"]["status"] == "done"
    assert 0 <= result["knn_top1"] <= 100
    assert {"knn_floor_random_top1", "knn_floor_pixels_top1"} <= set(result)  # floors built it too
    out = export_run(run_dir, tmp_path / "exported" / "backbone.pt")
    state = torch.load(out, map_location="cpu", weights_only=True)
    toy_cnn().load_state_dict(state, strict=True)  # the layout: the toy network itself
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["backbone"], sidecar["load_into"]) == ("toy_cnn", TOY_CNN.layout.load_into)
    assert sidecar["metrics"]["knn_top1"] == result["knn_top1"]
    pipeline_export = torch.load(run_dir / "export" / "backbone.pt", weights_only=True)
    assert all(torch.equal(pipeline_export[key], state[key]) for key in state)


@pytest.mark.parametrize("stage", ["detection", "segmentation"])
def test_a_coco_stage_is_refused_for_a_backbone_without_feature_maps(
    toy_registered, make_run, tmp_path, stage
):
    allowed = ", ".join(detection_backbones())
    assert "toy_cnn" not in allowed
    expected = f"stage {stage!r} needs a CNN backbone ({allowed}), got 'toy_cnn'"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        make_run(tmp_path, backbone="toy_cnn", stages=["pretrain", stage])
