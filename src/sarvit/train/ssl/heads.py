"""The heads the self-supervised tasks put on a backbone's [CLS] features: DINO's projection head and
MoCo-v3's batch-normalised MLPs (projector and predictor)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["DINOHead", "bn_mlp"]


class DINOHead(nn.Module):
    """DINO's projection head: an MLP of ``layers`` Linear layers (GELU between, optional BN) to a
    ``bottleneck`` width, L2 normalisation, then a weight-normalised Linear to ``out_dim`` prototypes.

    ``norm_last_layer``: the weight norm's magnitude ``g`` stays fixed at 1 (DINO's default, which keeps
    training stable with ViTs). ``forward(x, freeze_last_layer=True)`` lets no gradient reach the last layer
    (DINO's first epoch(s): its parameters get no ``.grad`` at all, so the optimizer leaves them untouched).

    Shapes: ``x [B, in_dim]`` -> ``[B, out_dim]``.

    Example:
        >>> head = DINOHead(8, out_dim=16, hidden_dim=12, bottleneck_dim=4)
        >>> head(torch.randn(3, 8)).shape
        torch.Size([3, 16])
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        widths = [in_dim] + [hidden_dim] * (layers - 1) + [bottleneck_dim]
        parts: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            parts.append(nn.Linear(width_in, width_out))
            if index < layers - 1:
                parts.extend([nn.BatchNorm1d(width_out)] if use_bn else [])
                parts.append(nn.GELU())
        self.mlp = nn.Sequential(*parts)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad_(not norm_last_layer)

    def forward(self, x: torch.Tensor, freeze_last_layer: bool = False) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        weight = self.last_layer.weight
        return F.linear(x, weight.detach() if freeze_last_layer else weight)


def bn_mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """MoCo-v3's MLP: ``layers`` Linear layers, each followed by BatchNorm, ReLU between; the last BatchNorm has
    no affine parameters (the paper's projector: 3 layers, predictor: 2). Linear layers before a BN carry no bias.

    Shapes: ``[B, in_dim]`` -> ``[B, out_dim]``.

    Example:
        >>> mlp = bn_mlp(8, 16, 4, layers=3)
        >>> mlp(torch.randn(5, 8)).shape, mlp[-1].affine
        (torch.Size([5, 4]), False)
    """
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    parts: list[nn.Module] = []
    widths = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        last = index == layers - 1
        parts += [nn.Linear(width_in, width_out, bias=False), nn.BatchNorm1d(width_out, affine=not last)]
        if not last:
            parts.append(nn.ReLU(inplace=True))
    return nn.Sequential(*parts)
