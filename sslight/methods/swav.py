"""SwAV (Caron et al., NeurIPS 2020) with SSLight's weighted global/local loss (Tan et al., 2023).

Backbone → projector (Linear 4096, BN, ReLU, Linear 128) → L2-normalised embedding → prototypes
(``Linear(128, 3000, bias=False)``, rows re-normalised before every step). Codes come from the two
global crops through Sinkhorn-Knopp and are predicted from every other crop; the prototypes are
frozen during the first epoch; a per-process feature queue joins the codes from epoch 15.
Defaults reproduce the seed repo's ``swav_cnn_{baseline,sslight}.yaml``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from sslight.config.base import StrictModel
from sslight.config.views import CNN_BASELINE_CROPS
from sslight.methods.base import (
    EvalNetwork,
    MethodSpec,
    MethodStep,
    Network,
    SSLMethod,
    StepContext,
    seed_lars,
)
from sslight.methods.swav_loss import SwAVLoss
from sslight.models import ProjectionHead, build_backbone, forward_multicrop

log = logging.getLogger(__name__)


class SwavConfig(StrictModel):
    """The ``swav:`` section. Defaults: the seed repo's CNN config (SWAV.* keys)."""

    hidden_dim: int = Field(default=4096, ge=1)
    out_dim: int = Field(default=128, ge=1)
    use_bn_in_head: bool = True
    num_prototypes: int = Field(default=3000, ge=2)
    temperature: float = Field(default=0.1, gt=0)
    epsilon: float = Field(default=0.05, gt=0)
    sinkhorn_iterations: int = Field(default=3, ge=1)
    freeze_prototypes_epochs: int = Field(default=1, ge=0)
    queue_length: int = Field(default=3840, ge=0)  # global; 0 disables the queue
    epoch_queue_starts: int = Field(default=15, ge=0)


class SwAVHead(nn.Module):
    """Projector → L2 normalisation → prototype scores; returns ``(embedding, scores)``.

    Linear layers start from N(0, 0.01) with zero bias, the seed repo's initialisation.
    Normalisation and prototype scores run in fp32 (Sinkhorn exponentiates ``scores / 0.05``).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, num_prototypes: int, batch_norm: bool
    ) -> None:
        super().__init__()
        self.projector = ProjectionHead(in_dim, hidden_dim, out_dim, batch_norm)
        self.prototypes = nn.Linear(out_dim, num_prototypes, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.projector(x)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = F.normalize(z.float(), dim=1, p=2)
            return z, self.prototypes(z)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1, p=2))


class SwAV(SSLMethod):
    per_process_state = True  # each process keeps its own queue, as SwAV does

    def __init__(self, cfg: Any, num_classes: int) -> None:
        args: SwavConfig = cfg.swav
        backbone = build_backbone(cfg.backbone)
        super().__init__(cfg, backbone, num_classes)
        self.args = args
        head = SwAVHead(
            backbone.embed_dim,
            args.hidden_dim,
            args.out_dim,
            args.num_prototypes,
            args.use_bn_in_head,
        )
        self.student = Network(backbone, head)
        self.criterion = SwAVLoss(
            self.n_global, args.temperature, args.epsilon, args.sinkhorn_iterations
        )
        # Per-process feature queue [n_global, L, out_dim] (not a buffer: never broadcast, and
        # saved through extra_state). ``use_queue`` is SwAV's ``use_the_queue``.
        self.queue: Tensor | None = None
        self.use_queue = False
        self._warned_short_queue = False

    def queue_length_per_process(self, batch: int) -> int:
        """SwAV: the global length rounded down to a multiple of the global batch, per process."""
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        length = self.args.queue_length // world
        return length - length % batch

    def _prepare_queue(self, epoch: int, batch: int, device: torch.device) -> None:
        """Allocate the (zero) queue once ``epoch`` reaches ``epoch_queue_starts``."""
        if not self.args.queue_length or epoch < self.args.epoch_queue_starts:
            return
        length = self.queue_length_per_process(batch)
        if self.queue is not None and self.queue.shape[1] != length:
            log.warning(
                "swav: dropping a queue of %d rows (expected %d: batch or world size changed)",
                self.queue.shape[1],
                length,
            )
            self.queue, self.use_queue = None, False
        if self.queue is None and length > 0:
            self.queue = torch.zeros(self.n_global, length, self.args.out_dim, device=device)
        elif length == 0 and not self._warned_short_queue:
            log.warning(
                "swav: queue_length %d gives less than one batch of %d per process: no queue",
                self.args.queue_length,
                batch,
            )
            self._warned_short_queue = True

    def ssl_step(self, views: list[Tensor], ctx: StepContext) -> MethodStep:
        head: SwAVHead = self.student.head
        head.normalize_prototypes()
        batch = views[0].shape[0]
        features = forward_multicrop(self.student.backbone, views, channels_last=self.channels_last)
        embedding, scores = head(features)

        self._prepare_queue(ctx.epoch, batch, embedding.device)
        queue_scores = None
        if self.queue is not None:
            # As SwAV: the queue joins once its oldest row is filled (it never empties again).
            self.use_queue = self.use_queue or bool(self.queue[:, -1].ne(0).any())
            if self.use_queue:
                with torch.no_grad(), torch.autocast(embedding.device.type, enabled=False):
                    queue_scores = self.queue @ head.prototypes.weight.float().t()
        loss, parts = self.criterion(scores, batch, self.loss_weights, queue_scores)
        if self.queue is not None:
            self._enqueue(embedding.detach()[: self.n_global * batch], batch)

        logs = {
            **{k: v.item() for k, v in parts.items()},
            "queue_active": float(queue_scores is not None),
        }
        return MethodStep(loss, logs, features)

    @torch.no_grad()
    def _enqueue(self, embedding: Tensor, batch: int) -> None:
        """Shift the queue by one batch and put crops 0..n_global-1 of this batch in front."""
        assert self.queue is not None
        self.queue[:, batch:] = self.queue[:, :-batch].clone()
        self.queue[:, :batch] = embedding.reshape(self.n_global, batch, -1)

    def before_optimizer_step(self, ctx: StepContext) -> None:
        if ctx.epoch < self.args.freeze_prototypes_epochs:
            for param in self.student.head.prototypes.parameters():
                param.grad = None

    def collapse_reference(self) -> dict[str, float]:
        """Collapsed embeddings give every sample the same scores, so Sinkhorn's codes become
        uniform (entropy ln K) and the swapped-prediction loss ln K."""
        ln_k = math.log(self.args.num_prototypes)
        return {"entropy_max": ln_k, "collapse_loss": ln_k}

    def extra_state(self) -> dict[str, Any]:
        """This process's queue (an empty tensor before it exists) and ``use_queue``.

        Queues differ per process (SwAV saves ``queue{rank}.pth``): ``per_process_state`` makes
        the engine keep every rank's copy in the checkpoint.
        """
        queue = self.queue.clone() if self.queue is not None else torch.empty(0)
        return {"queue": queue, "use_queue": self.use_queue}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        queue = state["queue"]
        device = self.student.head.prototypes.weight.device
        self.queue = queue.to(device, torch.float32).clone() if queue.numel() else None
        self.use_queue = bool(state["use_queue"])


# Seed repo baseline at 224 px (swav_cnn_baseline.yaml, LAMBDAS 0.142857 / 0.857143 = SwAV's
# uniform mean over 2 × 7 pairs); the 'sslight' policy is derived in sslight/config/views.py.
# No ViT preset: the seed repo has no SwAV ViT config (use views.policy: custom).
BASELINE_VIEWS = {
    "cnn": {**CNN_BASELINE_CROPS, "loss_weights": (1 / 7, 6 / 7)},
}

DEFAULTS = {
    "cnn": {"train": seed_lars(0.3, warmup_start_lr=0.075)},
}

SPEC = MethodSpec(
    name="swav",
    config=SwavConfig,
    build=SwAV,
    augmentation="swav",
    defaults=DEFAULTS,
    baseline_views=BASELINE_VIEWS,
    networks={"student": EvalNetwork("student", "network", "module.network.")},  # its only one
    seed_prefixes={"cnn": ("module.network.backbone.encoder.", True)},
)
