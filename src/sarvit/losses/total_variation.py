"""Total variation of similarity maps (ICLR draft of SAR, appendix B, Eq. 14) and its loss module."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_tensor
from ._precision import compute_dtype

__all__ = ["total_variation", "TotalVariationLoss"]


def total_variation(S: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of each map (Eq. 14 of the SAR ICLR draft, before the head mean).

    ``TV(S^h) = sum_{x, y} |S_{x,y} - S_{x,y+1}| + |S_{x,y} - S_{x+1,y}|``, the sum running over the
    grid; a difference whose second element would fall outside the grid is dropped (no padding,
    no wrap-around). The value is not divided by the number of terms, as in Eq. 14. Computed in
    float32 (float64 stays float64), also under autocast.

    Args:
        S: ``[B, H, h, w]`` similarity maps (any float dtype, any device).

    Returns:
        ``[B, H]`` total variations (float32, or float64 for float64 input).

    Example:
        >>> S = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
        >>> total_variation(S)  # two horizontal steps of 1, no vertical change
        tensor([[2.]])
    """
    check_tensor(S, "S", "B, H, h, w", dtype="float", nonempty=True)
    with torch.autocast(device_type=S.device.type, enabled=False):
        maps = S.to(compute_dtype(S))
        along_rows = (maps[..., :, 1:] - maps[..., :, :-1]).abs().sum(dim=(-2, -1))
        along_columns = (maps[..., 1:, :] - maps[..., :-1, :]).abs().sum(dim=(-2, -1))
    return along_rows + along_columns


class TotalVariationLoss(nn.Module):
    """The total-variation loss of Eq. 14: the mean of :func:`total_variation` over batch and heads.

    The draft tried it in place of the spatial entropy and reports that it "drastically
    underperforms" it, giving blurred maps; it is here for that comparison.

    Shape:
        input ``S [B, H, h, w]`` -> scalar (float32).

    Example:
        >>> loss = TotalVariationLoss()(torch.randn(2, 6, 14, 14, requires_grad=True))
        >>> loss.backward()
    """

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        return total_variation(S).mean()
