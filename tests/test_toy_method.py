"""A new method is one spec: a toy SimSiam declared below pretrains, is evaluated and exported.

SimSiam (Chen & He, CVPR 2021): backbone → projector → predictor on the two global crops; the
loss is the symmetric negative cosine similarity between each crop's prediction and the other
crop's projection under a stop-gradient, ``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2``. Nothing
else in the project names it: it is registered for the test and removed afterwards.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

import sslight
from sslight.config.base import StrictModel
from sslight.methods import METHODS, MethodSpec, SSLMethod
from sslight.methods.base import MethodStep, Network, StepContext
from sslight.models import ProjectionHead, build_backbone, forward_multicrop
from sslight.weights.export import export_run
from sslight.weights.layout import export_layout


# --- the whole method ----------------------------------------------------------------------------
class SimSiamConfig(StrictModel):
    """The ``simsiam:`` section."""

    proj_dim: int = Field(default=32, ge=1)
    pred_hidden_dim: int = Field(default=16, ge=1)


class SimSiamHead(nn.Module):
    """Projector (with BN) and predictor (bottleneck MLP); returns ``(z, p)``."""

    def __init__(self, in_dim: int, args: SimSiamConfig) -> None:
        super().__init__()
        self.projector = ProjectionHead(in_dim, args.proj_dim, args.proj_dim, batch_norm=True)
        self.predictor = ProjectionHead(
            args.proj_dim, args.pred_hidden_dim, args.proj_dim, batch_norm=True
        )

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projector(features)
        return z, self.predictor(z)


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's D(p, z): minus the mean cosine similarity, ``z`` under a stop-gradient."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


class SimSiam(SSLMethod):
    """One network, no momentum target, no negatives: the stop-gradient prevents collapse."""

    def __init__(self, cfg: Any, num_classes: int) -> None:
        backbone = build_backbone(cfg.backbone)
        super().__init__(cfg, backbone, num_classes)
        self.student = Network(backbone, SimSiamHead(backbone.embed_dim, cfg.simsiam))

    def ssl_step(self, views: list[Tensor], ctx: StepContext) -> MethodStep:
        features = forward_multicrop(
            self.student.backbone, views[:2], channels_last=self.channels_last
        )
        z, p = self.student.head(features)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
        spread = F.normalize(z1, dim=1).std(dim=0).mean().item()  # 0 when collapsed
        return MethodStep(loss, {"z_std": spread}, features)


SPEC = MethodSpec(
    name="simsiam",
    config=SimSiamConfig,
    build=SimSiam,
    augmentation="dino",
    defaults={"cnn": {"train": {"optimizer": "sgd", "base_lr": 0.05}}},
    baseline_views={},  # no preset: the test sets its views (policy: custom)
    default_stages=("pretrain", "knn"),
)
# --------------------------------------------------------------------------------------------------

TWO_GLOBALS = {
    "policy": "custom",
    "global_crops": {"number": 2, "size": 32, "scale": [0.3, 1.0]},
    "local_crops": {"number": 0, "size": 16, "scale": [0.05, 0.3]},
    "loss_weights": {"global_global": 1.0, "global_local": 0.0},
}


@pytest.fixture
def simsiam_registered():
    with METHODS.temporarily(SPEC.name, SPEC) as spec:
        yield spec
    assert SPEC.name not in METHODS


def test_the_toy_method_pretrains_runs_knn_and_exports(simsiam_registered, make_run, tmp_path):
    run_dir = tmp_path / "run"
    cfg = make_run(run_dir, method="simsiam", views=TWO_GLOBALS, stages=["pretrain", "knn"])
    assert (cfg.train.optimizer, cfg.simsiam.proj_dim) == ("sgd", 32)  # recipe and section

    result = sslight.run(cfg)

    assert result["stages"]["pretrain"]["status"] == result["stages"]["knn"]["status"] == "done"
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "type" not in s]
    assert len(losses) == 2 and all(math.isfinite(x) and -1 <= x <= 1 for x in losses)
    assert {"z_std", "probe_loss", "probe_acc"} <= steps[0].keys()  # the base adds the probe
    assert 0 <= result["knn_top1"] <= 100

    out = export_run(run_dir, tmp_path / "exported" / "backbone.pt")
    state = torch.load(out, map_location="cpu", weights_only=True)
    export_layout("resnet18").build().load_state_dict(state, strict=True)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert (sidecar["method"], sidecar["metrics"]["knn_top1"]) == ("simsiam", result["knn_top1"])


def test_a_method_registered_later_gets_its_config_section(simsiam_registered, make_run, tmp_path):
    cfg = make_run(tmp_path, method="simsiam", views=TWO_GLOBALS, simsiam={"proj_dim": 8})
    assert cfg.simsiam.proj_dim == 8 and cfg.stages == ["pretrain", "knn"]
