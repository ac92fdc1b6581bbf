"""Non-spatial entropy of similarity maps: the ablation the text after Eq. 8 of the SAR papers describes."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_number, check_tensor
from ._precision import compute_dtype

__all__ = ["nonspatial_entropy", "NonSpatialEntropyLoss"]


def nonspatial_entropy(S: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Entropy of each map taken over its elements, ignoring which ones are adjacent.

    For every map: ``m`` = its mean, ``B = ReLU(S - m) + eps`` (Eq. 5 plus the papers' ``eps``),
    ``p_{x,y} = B_{x,y} / sum B`` over all ``h*w`` elements, entropy ``-sum p log p``. Where the
    spatial entropy (Eq. 7-8) groups ``B`` into connected components first, here every element is
    its own "component", so the value is ``log(h*w)`` for a constant map (``B`` uniform) and ~0 when
    a single element carries all the mass. Gradients flow through ``B``. Computed in float32
    (float64 stays float64), also under autocast.

    Args:
        S: ``[B, H, h, w]`` similarity maps (any float dtype, any device).
        eps: added to every element of ``B`` (the papers' 1e-9); must be > 0 so ``log p`` is finite.

    Returns:
        ``[B, H]`` entropies (float32, or float64 for float64 input).

    Example:
        >>> nonspatial_entropy(torch.zeros(1, 1, 4, 4))  # uniform B: log 16
        tensor([[2.7726]])
    """
    check_tensor(S, "S", "B, H, h, w", dtype="float", nonempty=True)
    check_number(eps, "eps", low=0, low_open=True)  # log p needs p > 0
    with torch.autocast(device_type=S.device.type, enabled=False):
        maps = S.to(compute_dtype(S)).flatten(2)
        mass = torch.relu(maps - maps.mean(dim=-1, keepdim=True)) + eps
        p = mass / mass.sum(dim=-1, keepdim=True)
        return -(p * p.log()).sum(dim=-1)


class NonSpatialEntropyLoss(nn.Module):
    """Mean of :func:`nonspatial_entropy` over batch and heads (Eq. 9 with the non-spatial entropy).

    Args:
        eps: see :func:`nonspatial_entropy`.

    Shape:
        input ``S [B, H, h, w]`` -> scalar (float32).

    Example:
        >>> loss = NonSpatialEntropyLoss()(torch.randn(2, 6, 14, 14, requires_grad=True))
        >>> loss.backward()
    """

    def __init__(self, eps: float = 1e-9) -> None:
        super().__init__()
        check_number(eps, "eps", low=0, low_open=True)  # log p needs p > 0
        self.eps = eps

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        return nonspatial_entropy(S, self.eps).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
