"""Projection heads: the DINO head (Caron et al., ICCV 2021, facebookresearch/dino ``DINOHead``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """MLP → L2-normalised bottleneck → weight-normalised linear layer to ``out_dim`` logits.

    The MLP is ``(Linear, [BatchNorm1d], GELU) × (nlayers - 1)`` then a Linear to
    ``bottleneck_dim``. ``last_layer`` is ``Linear(bottleneck_dim, out_dim, bias=False)`` under
    weight normalisation (``torch.nn.utils.parametrizations.weight_norm``, so the module survives
    ``copy.deepcopy`` and ``torch.load(weights_only=True)``); its magnitude ``g`` starts at 1 and is
    frozen when ``norm_last_layer`` (the seed's CNN setting). The trainer zeroes ``last_layer``'s
    gradients during the first epoch, as DINO does.

    Seed configs: CNNs ``hidden 2048, bottleneck 256, out 4096, use_bn=True,
    norm_last_layer=True``; ViT-T ``out 65536, use_bn=False, norm_last_layer=False``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        use_bn: bool = False,
        norm_last_layer: bool = True,
        nlayers: int = 3,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
    ) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = []
            dim = in_dim
            for _ in range(nlayers - 1):
                layers.append(nn.Linear(dim, hidden_dim))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
                dim = hidden_dim
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        magnitude.data.fill_(1.0)
        magnitude.requires_grad = not norm_last_layer
        self.norm_last_layer = norm_last_layer

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_dim]`` → ``[N, out_dim]`` logits."""
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


class ProjectionHead(nn.Module):
    """Linear → [BN] → ReLU → Linear: SwAV's projector (4096, BN → 128; Caron et al. 2020) and
    MoCo-v2's MLP head (2048 → 128, no BN; Chen et al. 2020)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)
