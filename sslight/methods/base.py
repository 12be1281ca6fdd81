"""What a self-supervised method is to the engine: a spec in the registry and an ``nn.Module``.

The engine owns the loop (data, optimiser, schedules, checkpoints); a method owns its networks,
its loss and its per-step state. Multi-crop forwards go through ``forward_multicrop`` so every
method batches crops per resolution the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from sslight.config.base import StrictModel

if TYPE_CHECKING:
    from sslight.config.schema import RunConfigBase


def seed_lars(base_lr: float, **extra: Any) -> dict[str, Any]:
    """The seed repo's LARS recipe for CNNs (min lr 0.0048, weight decay 1e-6 throughout)."""
    return {
        "optimizer": "lars",
        "base_lr": base_lr,
        "min_lr": 0.0048,
        "weight_decay": 1e-6,
        "weight_decay_end": 1e-6,
        **extra,
    }


@dataclass(frozen=True)
class StepContext:
    """Where the loop is: everything a method's schedules are indexed by."""

    epoch: int
    step: int  # global iteration, 0-based
    steps_per_epoch: int


@dataclass
class StepOutput:
    """One training step as the engine sees it: the loss to backpropagate and its logs."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class MethodStep:
    """A method's own step: its loss, its logs (beyond ``loss``) and the student backbone
    features whose first ``batch`` rows (the first student view) feed the joint probe."""

    loss: torch.Tensor
    logs: dict[str, float]
    probe_features: torch.Tensor


SeedLayout = tuple[str, bool]
"""Where a released seed checkpoint keeps the evaluated backbone: ``(key prefix, by_position)``,
``by_position`` for a CNN encoder with positional tensor names (sslight/weights/seed_import.py)."""


@dataclass(frozen=True)
class EvalNetwork:
    """One of a method's networks that ``eval.network`` can choose for the evaluation stages.

    ``attribute``: the SSLMethod attribute holding it (a ``Network``); ``label``: what
    result.json, the export sidecar and the report call it; ``seed_module``: its module in the
    seed repo's releases (``module.student.``), where the ``seed_prefixes`` point for the
    student."""

    attribute: str
    label: str
    seed_module: str


STUDENT_ONLY = {"student": EvalNetwork("student", "student", "module.student.")}


@dataclass(frozen=True)
class MethodSpec:
    """Everything the platform knows about a method, in one registry entry.

    - ``config``: the method's section of the run config (e.g. ``dino:``), a StrictModel;
    - ``build(cfg, num_classes)``: the SSLMethod;
    - ``augmentation``: its ``AUG_RECIPES`` name (sslight/data/transforms.py);
    - ``defaults[family]``: recipe defaults merged under the user's config
      (e.g. ``{"train": {...}, "dino": {...}}``);
    - ``baseline_views[family]``: the seed repo's baseline geometry at 224 px
      (see sslight/config/views.py);
    - ``networks``: the networks ``eval.network`` chooses from (``student``, the seed's
      choice and the default, and ``teacher`` where the method has one);
    - ``seed_prefixes[family]``: where the seed repo's released checkpoints keep the student's
      backbone (the key that tells which method a release is);
    - ``semi_head_from_pretrained``: the semi-supervised MLP head starts from the first two
      layers of the evaluated network's projection head (the seed's ``use_head=True``, DINO).
    """

    name: str
    config: type[StrictModel]
    build: Callable[..., SSLMethod]
    augmentation: str
    defaults: dict[str, dict[str, Any]]
    baseline_views: dict[str, dict[str, Any]]
    default_stages: tuple[str, ...] = ("pretrain", "knn", "linear")
    networks: dict[str, EvalNetwork] = field(default_factory=lambda: dict(STUDENT_ONLY))
    seed_prefixes: dict[str, SeedLayout] = field(default_factory=dict)
    semi_head_from_pretrained: bool = False


class Network(nn.Module):
    """Backbone followed by a projection head; ``backbone`` is what evaluations use."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head


class SSLMethod(nn.Module):
    """Base class: a student network (the checkpoint's ``"model"``) plus the joint linear probe.

    Subclasses set ``self.student`` (backbone + head) and implement ``ssl_step``; the base's
    ``training_step`` adds the joint probe's loss and logs; the networks that evaluations may
    take are named in its spec (``MethodSpec.networks``). A method whose ``extra_state``
    differs between processes (SwAV's queues) sets ``per_process_state`` so checkpoints keep
    one copy per rank.
    """

    per_process_state: ClassVar[bool] = False

    def __init__(self, cfg: RunConfigBase, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_global = cfg.views.global_crops.number
        self.loss_weights = (
            cfg.views.loss_weights.global_global,
            cfg.views.loss_weights.global_local,
        )
        self.channels_last = False
        # Joint linear probe (seed repo TRAIN.JOINT_LINEAR_PROBE): a monitor on detached features.
        self.probe = nn.Linear(backbone.embed_dim, num_classes) if cfg.train.joint_probe else None

    def setup(self, epochs: int, steps_per_epoch: int) -> None:
        """Precompute the method's own schedules (called once the loop length is known)."""

    def ssl_step(self, views: list[torch.Tensor], ctx: StepContext) -> MethodStep:
        """The method's loss on one batch of views (every crop, globals first)."""
        raise NotImplementedError

    def schedule_logs(self, ctx: StepContext) -> dict[str, float]:
        """Values of the method's own schedules at this step, logged after its step logs."""
        return {}

    def training_step(
        self, views: list[torch.Tensor], labels: torch.Tensor, ctx: StepContext
    ) -> StepOutput:
        """The method's step plus the joint probe: ``loss + probe_loss``, logs merged."""
        step = self.ssl_step(views, ctx)
        probe_loss, probe_logs = self.probe_step(step.probe_features[: labels.shape[0]], labels)
        logs = {"loss": step.loss.item(), **step.logs, **self.schedule_logs(ctx), **probe_logs}
        return StepOutput(step.loss + probe_loss, logs)

    def forward(
        self, views: list[torch.Tensor], labels: torch.Tensor, ctx: StepContext
    ) -> StepOutput:
        """One training step's loss; the engine calls the (possibly DDP-wrapped) module."""
        return self.training_step(views, labels, ctx)

    def trainable_modules(self) -> list[nn.Module]:
        """Modules whose parameters the optimiser updates."""
        return [m for m in (self.student, self.probe) if m is not None]

    def before_optimizer_step(self, ctx: StepContext) -> None:
        """Hook after backward, before the update (e.g. freeze a layer's gradients)."""

    def after_optimizer_step(self, ctx: StepContext) -> None:
        """Hook after the update (e.g. the EMA teacher)."""

    def probe_step(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Cross-entropy of the joint probe on detached features of the first student view."""
        if self.probe is None:
            return features.new_zeros(()), {}
        logits = self.probe(features.detach().float())
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(dim=1) == labels).float().mean()
        return loss, {"probe_loss": loss.item(), "probe_acc": acc.item()}

    def collapse_reference(self) -> dict[str, float]:
        """What the collapse monitor (sslight/engine/monitors.py) compares this method against:
        ``collapse_loss``, the loss of a collapsed output, and, for a method whose steps log
        ``teacher_entropy`` / ``teacher_batch_entropy``, ``entropy_max`` = ln K of that
        distribution."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Tensors and numbers beyond the student and probe that a checkpoint must carry."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``extra_state``."""
