"""MoCo-v2 (He et al., CVPR 2020; Chen et al. 2020) with multi-crop and SSLight's weighted loss
(Tan et al., ICLR 2023), as the seed repo's ``MOCO`` model and ``MOCOLoss``.

- Query encoder (the checkpoint's ``"model"``, and what is evaluated): backbone + MLP head
  ``Linear(D, 2048) → ReLU → Linear(2048, 128)`` (no BN), L2-normalised outputs.
- Key encoder: a copy of the query encoder updated only by momentum,
  ``θ_k ← m·θ_k + (1 − m)·θ_q`` after every optimiser step (m = 0.999, constant unless
  ``momentum_end`` is set). The seed applies the same update at the start of the next forward,
  before computing the keys, with the same query weights, so the sequence of keys is identical.
  Only parameters follow the query encoder; the key encoder's BN statistics are its own.
- Views: the key is global view 1 through the key encoder; the queries are global view 2 and every
  local view through the query encoder (one forward per resolution). Loss: InfoNCE against a queue
  of the latest keys, ``w_gg · CE(global-2 query) + w_gl · mean(CE of local queries)``
  (see :mod:`sslight.methods.moco_loss`).
- No shuffling BN. MoCo shuffles the key batch across GPUs so BN cannot leak batch statistics
  between a query and its key; this platform also trains in a single process, where there is
  nothing to shuffle across, and data-parallel runs on GPUs have their BN converted to SyncBN by
  the engine, whose statistics are global anyway. The key encoder, in train mode, normalises with
  its own batch's statistics.
- Under ``torch.distributed`` the keys are all-gathered before they are enqueued, so every process
  keeps the same queue (the engine's DDP does not broadcast buffers).
- Joint linear probe (as DINO here): on the detached query-encoder features of the *first query
  view*, which for MoCo is global view 2 (global view 1 only feeds the key encoder), as in the seed.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from sslight.config.base import StrictModel
from sslight.config.errors import ConfigError
from sslight.config.views import CNN_BASELINE_CROPS
from sslight.methods.base import (
    EvalNetwork,
    MethodSpec,
    MethodStep,
    Network,
    StepContext,
    seed_lars,
)
from sslight.methods.moco_loss import MoCoLoss
from sslight.methods.momentum import MomentumMethod
from sslight.models import ProjectionHead, build_backbone, forward_multicrop


class MocoConfig(StrictModel):
    """The ``moco:`` section. Defaults: the seed repo's MoCo configs (``MOCO:``)."""

    out_dim: int = Field(default=128, ge=1)
    hidden_dim: int = Field(default=2048, ge=1)
    use_bn_in_head: bool = False
    temperature: float = Field(default=0.2, gt=0)
    queue_length: int = Field(default=65536, ge=1)
    momentum: float = Field(default=0.999, ge=0, le=1)
    # None keeps the key-encoder momentum constant (the seed); a value anneals it by cosine.
    momentum_end: float | None = Field(default=None, ge=0, le=1)


def _init_head(head: nn.Module) -> None:
    """The seed's ``MOCOHead`` init: truncated normal (std 0.02) weights, zero biases."""
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class MoCo(MomentumMethod):
    """MoCo evaluates the query encoder, its student (He et al. 2020, Sec. 3.3)."""

    def __init__(self, cfg: Any, num_classes: int) -> None:
        args: MocoConfig = cfg.moco
        backbone = build_backbone(cfg.backbone)
        super().__init__(cfg, backbone, num_classes)
        self.args = args
        # train.batch_size is the global batch: the keys one step enqueues.
        if cfg.train.batch_size > args.queue_length:
            raise ConfigError(
                "config",
                "moco.queue_length",
                f"{args.queue_length} is smaller than train.batch_size {cfg.train.batch_size}, "
                "the keys enqueued per step; raise moco.queue_length",
            )
        head = ProjectionHead(
            backbone.embed_dim, args.hidden_dim, args.out_dim, batch_norm=args.use_bn_in_head
        )
        _init_head(head)
        self.student = Network(backbone, head)  # the query encoder
        self.key_encoder = copy.deepcopy(self.student)
        self.key_encoder.requires_grad_(False)
        self.criterion = MoCoLoss(
            args.out_dim, args.queue_length, args.temperature, n_global_queries=self.n_global - 1
        )

    def momentum_target(self) -> Network:
        return self.key_encoder

    def momentum_range(self) -> tuple[float, float]:
        a = self.args
        return a.momentum, (a.momentum if a.momentum_end is None else a.momentum_end)

    def ssl_step(self, views: list[torch.Tensor], ctx: StepContext) -> MethodStep:
        features = forward_multicrop(
            self.student.backbone, views[1:], channels_last=self.channels_last
        )
        queries = self.student.head(features)
        with torch.no_grad():
            key_features = forward_multicrop(
                self.key_encoder.backbone, views[:1], channels_last=self.channels_last
            )
            keys = self.key_encoder.head(key_features)
        loss, parts = self.criterion(queries, keys, self.loss_weights)
        # The probe sees the first query view: global view 2.
        return MethodStep(loss, {k: v.item() for k, v in parts.items()}, features)

    def collapse_reference(self) -> dict[str, float]:
        """No teacher distribution: feature std and loss only. With every embedding equal, the
        positive and the queue's negatives score alike: InfoNCE = ln(queue + 1)."""
        return {"collapse_loss": math.log(self.args.queue_length + 1)}

    def extra_state(self) -> dict[str, Any]:
        return {
            "key_encoder": self.key_encoder.state_dict(),
            "queue": self.criterion.queue.clone(),
            "queue_ptr": self.criterion.queue_ptr.clone(),
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        queue = state["queue"]
        if queue.shape != self.criterion.queue.shape:
            raise ValueError(
                f"the checkpoint's MoCo queue is {list(queue.shape)} but this config builds "
                f"{list(self.criterion.queue.shape)} (moco.out_dim × moco.queue_length)"
            )
        self.key_encoder.load_state_dict(state["key_encoder"])
        self.criterion.queue.copy_(queue)
        self.criterion.queue_ptr.copy_(state["queue_ptr"])


# Seed repo baselines at 224 px (moco_cnn_baseline.yaml; LAMBDAS 1/7, 6/7: the plain mean over the
# 7 queries); the 'sslight' policy is derived in sslight/config/views.py. No ViT preset.
BASELINE_VIEWS = {
    "cnn": {**CNN_BASELINE_CROPS, "loss_weights": (1 / 7, 6 / 7)},
}

# The seed's moco_cnn_*.yaml SOLVER section: lr 0.48, min lr 0.0048, weight decay 1e-6 → 1e-6.
DEFAULTS = {
    "cnn": {"train": seed_lars(0.48)},
}

SPEC = MethodSpec(
    name="moco",
    config=MocoConfig,
    build=MoCo,
    # The seed builds MoCo's views with the same MultiCropsDataAugmentation and the same
    # MULTI_VIEWS_TRANSFORMS values as DINO (blur 1.0 / 0.1 / 0.5, jitter (0.4, 0.4, 0.2, 0.1),
    # solarize 0.2 on global 2), not MoCo-v2's aug_plus: see moco_cnn_baseline.yaml.
    augmentation="dino",
    defaults=DEFAULTS,
    baseline_views=BASELINE_VIEWS,
    # The query encoder is evaluated (He et al. 2020, Sec. 3.3; the seed's load_moco_cnn).
    networks={
        "student": EvalNetwork("student", "query encoder", "module.encoder_q."),
        "teacher": EvalNetwork("key_encoder", "key encoder", "module.encoder_k."),
    },
    seed_prefixes={"cnn": ("module.encoder_q.backbone.encoder.", True)},
)
