"""SwAV's swapped prediction (Caron et al., NeurIPS 2020) with SSLight's weighted view pairs.

Codes ``q`` come from the prototype scores of the crops used for assignment (the two globals)
through the Sinkhorn-Knopp equipartition; every other crop predicts them with a softmax at
temperature ``τ``. SwAV averages ``H(q_i, p_v)`` uniformly over all pairs ``v != i``; SSLight
splits them into global–global and global–local groups and mixes their means:
``loss = w_gg · mean(gg) + w_gl · mean(gl)``. With 2 globals and ``n`` locals,
``(w_gg, w_gl) = (2 / P, 2n / P)`` with ``P = 2 + 2n`` pairs recovers SwAV exactly.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from sslight.engine.monitors import distribution_entropies
from sslight.methods.pair_loss import weighted_cross_view_loss


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft codes ``[N, K]`` for prototype scores ``[N, K]`` (SwAV ``distributed_sinkhorn``).

    ``Q = exp(scores / ε)ᵀ`` (``K × B``) is scaled to total mass 1, then alternately each
    prototype row is scaled to mass ``1/K`` and each sample column to mass ``1/B``; finally the
    columns are scaled by ``B`` so every sample's code sums to 1 over the prototypes. Under
    ``torch.distributed`` the total and the row sums are all-reduced and ``B`` counts the global
    batch, so the equipartition holds over all processes' samples, as in SwAV.
    """
    with torch.autocast(device_type=scores.device.type, enabled=False):
        q = torch.exp(scores.detach().float() / epsilon).t()  # K × B
        world = dist.get_world_size() if _distributed() else 1
        n_samples = q.shape[1] * world
        n_prototypes = q.shape[0]

        total = q.sum()
        if world > 1:
            dist.all_reduce(total)
        q /= total
        for _ in range(iterations):
            rows = q.sum(dim=1, keepdim=True)
            if world > 1:
                dist.all_reduce(rows)
            q /= rows
            q /= n_prototypes
            q /= q.sum(dim=0, keepdim=True)
            q /= n_samples
        q *= n_samples
        return q.t()


class SwAVLoss(nn.Module):
    """Weighted multi-crop swapped prediction.

    ``scores`` are the prototype scores ``[V·B, K]`` of all crops, view-major as produced by
    :func:`sslight.models.forward_multicrop` with the ``n_global`` globals first; codes are
    computed from the first ``n_global`` crops (SwAV's ``crops_for_assign``). ``queue_scores``
    (``[n_global, L, K]``), when given, are prepended to each assigned crop's scores before
    Sinkhorn and only the batch's codes are kept (SwAV's feature queue).
    """

    def __init__(
        self,
        n_global: int = 2,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
    ) -> None:
        super().__init__()
        if n_global < 1:
            raise ValueError(f"n_global must be >= 1, got {n_global}")
        self.n_global = n_global
        self.temperature = temperature
        self.epsilon = epsilon
        self.sinkhorn_iterations = sinkhorn_iterations

    @torch.no_grad()
    def codes(self, scores: Tensor, batch: int, queue_scores: Tensor | None = None) -> Tensor:
        """Sinkhorn codes ``[n_global, B, K]`` of the assigned crops."""
        codes = []
        for i in range(self.n_global):
            out = scores[i * batch : (i + 1) * batch].detach().float()
            if queue_scores is not None:
                out = torch.cat((queue_scores[i].float(), out))
            codes.append(sinkhorn_knopp(out, self.epsilon, self.sinkhorn_iterations)[-batch:])
        return torch.stack(codes)

    def forward(
        self,
        scores: Tensor,
        batch: int,
        weights: tuple[float, float],
        queue_scores: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``w_gg · mean(gg terms) + w_gl · mean(gl terms)`` and the detached group means.

        A group without terms (no local crops, or a single global) contributes 0.
        """
        n_g = self.n_global
        if batch < 1 or scores.shape[0] % batch or scores.shape[0] < n_g * batch:
            raise ValueError(
                f"scores has {scores.shape[0]} rows; expected V·{batch} with V >= {n_g}"
            )
        n_views = scores.shape[0] // batch
        q = self.codes(scores, batch, queue_scores)

        with torch.autocast(device_type=scores.device.type, enabled=False):
            log_p = F.log_softmax(scores.float() / self.temperature, dim=-1)
            log_p = log_p.reshape(n_views, batch, -1)
            loss, loss_gg, loss_gl = weighted_cross_view_loss(q, log_p, weights)
        return loss, {
            "loss_gg": loss_gg.detach(),
            "loss_gl": loss_gl.detach(),
            **distribution_entropies(q),
        }
