"""MoCo's InfoNCE against a queue of keys (He et al., CVPR 2020; MoCo-v2, Chen et al. 2020),
multi-crop and with SSLight's weighted view groups (Tan et al., ICLR 2023).

Every query ``q`` (one per view and image) has one positive, the key ``k⁺`` of the same image,
and ``K`` negatives, the queue. With L2-normalised embeddings and temperature ``T``::

    logits = [q·k⁺, q·queue] / T        ce(q) = CrossEntropy(logits, target 0)

The ``n_global_queries`` first query views are globals, the others locals; ``ce`` is averaged
over the batch per view, then ``loss = w_gg · mean(global views) + w_gl · mean(local views)``
(the seed repo's ``MOCOLoss``). With 1 global and ``n`` local query views, ``(1, n) / (1 + n)``
is the plain mean over all queries.

The queue is a FIFO of the latest keys: ``[dim, K]`` columns, randomly initialised and
L2-normalised as in MoCo, with a write pointer. ``forward`` enqueues the step's keys after
computing the loss (so a batch is never its own negative). Under ``torch.distributed`` the keys
are all-gathered first, so every process keeps the same queue. Writes wrap around the end, so
``K`` need not be a multiple of the batch (when it is, this is exactly MoCo's enqueue).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@torch.no_grad()
def concat_all_gather(tensor: Tensor) -> Tensor:
    """``tensor`` from every process, concatenated along dim 0 (rank order); no gradient."""
    if not _distributed() or dist.get_world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered)


class MoCoLoss(nn.Module):
    """Weighted multi-crop InfoNCE with a queue of negatives (owns the queue).

    ``queries`` is ``[V·B, D]`` (V query views, view-major as produced by
    :func:`sslight.models.forward_multicrop`), ``keys`` is ``[B, D]``; both are L2-normalised here.
    ``forward`` enqueues ``keys`` after computing the loss, so call it exactly once per step.
    """

    queue: Tensor
    queue_ptr: Tensor

    def __init__(
        self,
        dim: int = 128,
        queue_length: int = 65536,
        temperature: float = 0.2,
        n_global_queries: int = 1,
    ) -> None:
        super().__init__()
        if queue_length < 1:
            raise ValueError(f"queue_length must be >= 1, got {queue_length}")
        if n_global_queries < 0:
            raise ValueError(f"n_global_queries must be >= 0, got {n_global_queries}")
        self.temperature = temperature
        self.n_global_queries = n_global_queries
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_length), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def queue_length(self) -> int:
        return self.queue.shape[1]

    def forward(
        self, queries: Tensor, keys: Tensor, weights: tuple[float, float]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``w_gg · mean(global-query CE) + w_gl · mean(local-query CE)`` and the detached
        group means, then enqueue ``keys``. An empty group contributes 0."""
        batch = keys.shape[0]
        if batch == 0 or queries.shape[0] % batch or queries.shape[0] < batch:
            raise ValueError(
                f"queries has {queries.shape[0]} rows; expected V·{batch} with V >= 1 "
                f"(keys has {batch})"
            )
        n_views = queries.shape[0] // batch
        w_gg, w_gl = weights

        # Logits over 1 + K entries are kept in fp32 even under autocast.
        with torch.autocast(device_type=queries.device.type, enabled=False):
            q = F.normalize(queries.float(), dim=-1).reshape(n_views, batch, -1)
            k = F.normalize(keys.detach().float(), dim=-1)
            positive = torch.einsum("vbd,bd->vb", q, k).unsqueeze(-1)
            # The queue is cloned: enqueue() writes it in place before backward() needs it.
            negative = torch.einsum("vbd,dk->vbk", q, self.queue.clone().detach())
            logits = torch.cat([positive, negative], dim=-1) / self.temperature
            target = torch.zeros(n_views * batch, dtype=torch.long, device=logits.device)
            ce = F.cross_entropy(logits.flatten(0, 1), target, reduction="none")
            ce = ce.reshape(n_views, batch).mean(dim=1)  # per query view

            zero = ce.new_zeros(())
            n_g = min(self.n_global_queries, n_views)
            loss_gg = ce[:n_g].mean() if n_g > 0 else zero
            loss_gl = ce[n_g:].mean() if n_views > n_g else zero
            loss = w_gg * loss_gg + w_gl * loss_gl

        self.enqueue(k)
        return loss, {"loss_gg": loss_gg.detach(), "loss_gl": loss_gl.detach()}

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (``[B, D]``, gathered over processes) over the oldest queue entries."""
        keys = concat_all_gather(keys.detach().to(self.queue.dtype))
        n, size = keys.shape[0], self.queue_length
        if n > size:
            raise ValueError(
                f"moco.queue_length {size} is smaller than the {n} keys of one step "
                "(the global batch); raise moco.queue_length"
            )
        ptr = int(self.queue_ptr)
        index = (ptr + torch.arange(n, device=self.queue.device)) % size
        self.queue[:, index] = keys.T
        self.queue_ptr[0] = (ptr + n) % size
