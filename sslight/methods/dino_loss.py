"""The DINO loss (Caron et al., ICCV 2021) with SSLight's weighted view pairs (Tan et al., 2023).

DINO averages the cross-entropy ``H(q_teacher(global i), p_student(view v))`` uniformly over all
pairs with ``v != i``. SSLight splits the pairs into global–global and global–local groups, averages
each group, and mixes them: ``loss = w_gg · mean(gg) + w_gl · mean(gl)``. With 2 globals and
``n`` locals, ``(w_gg, w_gl) = (2 / P, 2n / P)`` with ``P = 2 + 2n`` pairs recovers DINO exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from sslight.engine.monitors import distribution_entropies
from sslight.methods.pair_loss import weighted_cross_view_loss


class DINOLoss(nn.Module):
    """Weighted multi-crop DINO loss with teacher centering.

    ``student_out`` is ``[V·B, K]`` (V views, the ``n_global`` globals first, view-major as
    produced by :func:`sslight.models.forward_multicrop`); ``teacher_out`` is ``[n_global·B, K]``.
    ``forward`` also updates the center from ``teacher_out`` after computing the loss, as DINO
    does, so call it exactly once per training step.
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        n_global: int = 2,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        if n_global < 1:
            raise ValueError(f"n_global must be >= 1, got {n_global}")
        self.out_dim = out_dim
        self.n_global = n_global
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(
        self,
        student_out: Tensor,
        teacher_out: Tensor,
        teacher_temp: float,
        weights: tuple[float, float],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``w_gg · mean(gg terms) + w_gl · mean(gl terms)`` and the detached group means.

        A group without terms (no local crops, or a single global) contributes 0.
        """
        n_g = self.n_global
        if teacher_out.shape[0] % n_g:
            raise ValueError(f"teacher_out has {teacher_out.shape[0]} rows, not n_global·B")
        batch = teacher_out.shape[0] // n_g
        if student_out.shape[0] % batch or student_out.shape[0] < teacher_out.shape[0]:
            raise ValueError(
                f"student_out has {student_out.shape[0]} rows; expected V·{batch} with V >= {n_g}"
            )
        n_views = student_out.shape[0] // batch

        # Cross-entropies over large K are kept in fp32 even under autocast.
        with torch.autocast(device_type=student_out.device.type, enabled=False):
            log_p = F.log_softmax(student_out.float() / self.student_temp, dim=-1)
            log_p = log_p.reshape(n_views, batch, -1)
            q = F.softmax((teacher_out.detach().float() - self.center) / teacher_temp, dim=-1)
            q = q.reshape(n_g, batch, -1)
            loss, loss_gg, loss_gl = weighted_cross_view_loss(q, log_p, weights)

        self.update_center(teacher_out)
        return loss, {
            "loss_gg": loss_gg.detach(),
            "loss_gl": loss_gl.detach(),
            **distribution_entropies(q),
        }

    @torch.no_grad()
    def update_center(self, teacher_out: Tensor) -> None:
        """EMA of the teacher's batch mean: ``c ← m·c + (1 − m)·mean(teacher_out)``.

        The batch mean is averaged over processes (all-reduce sum / world size) when
        ``torch.distributed`` is initialised, so every rank keeps the same center.
        """
        batch_center = teacher_out.detach().float().mean(dim=0, keepdim=True)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            batch_center /= dist.get_world_size()
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
