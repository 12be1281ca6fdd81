"""SSLight's weighted cross-view loss shared by DINO and SwAV (Tan et al., ICLR 2023, Sec. 4).

Targets ``q`` come from the global views, predictions ``log p`` from every view; each target view
is compared with every other view. Global–global and global–local terms are averaged separately
and mixed as ``w_gg · mean(gg) + w_gl · mean(gl)``; an empty group contributes 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def weighted_cross_view_loss(
    q: Tensor, log_p: Tensor, weights: tuple[float, float]
) -> tuple[Tensor, Tensor, Tensor]:
    """``q``: [G, B, K] target distributions of the G globals; ``log_p``: [V, B, K] predictions of
    all V views (globals first). Returns (loss, loss_gg, loss_gl)."""
    n_g, batch = q.shape[0], q.shape[1]
    n_views = log_p.shape[0]
    # ce[i, v] = mean_b  -Σ_k q[i, b, k] · log p[v, b, k]
    ce = -torch.einsum("ibk,vbk->iv", q, log_p) / batch
    zero = ce.new_zeros(())
    if n_g > 1:
        off_diagonal = ~torch.eye(n_g, dtype=torch.bool, device=ce.device)
        loss_gg = ce[:, :n_g][off_diagonal].mean()
    else:
        loss_gg = zero
    loss_gl = ce[:, n_g:].mean() if n_views > n_g else zero
    w_gg, w_gl = weights
    return w_gg * loss_gg + w_gl * loss_gl, loss_gg, loss_gl
