"""Spatial entropy of similarity maps (SAR, Eq. 5-9) and its loss module."""
from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice, check_maps, check_number
from ..errors import SarvitError
from ..ops import connected_components
from ..ops.triton_spatial_entropy import (
    MAX_FUSED_PIXELS,
    fused_available,
    fused_spatial_entropy,
    interpreting,
)

__all__ = ["spatial_entropy", "SpatialEntropyLoss", "check_maps"]


def spatial_entropy(
    S: torch.Tensor,
    connectivity: int = 8,
    eps: float = 1e-9,
    *,
    check_finite: bool | None = None,
    method: str = "auto",
) -> torch.Tensor:
    """Spatial entropy of each map (Eq. 5-8 of the SAR papers).

    For every map: ``m`` = its mean; the components ``C_j`` of ``S > m`` (8- or 4-connected);
    ``B = ReLU(S - m) + eps``; ``P(C_j) = sum_{C_j} B / sum_all B``; entropy ``-sum_j P log P``.
    A map with nothing above its mean has no component and entropy 0. Gradients flow through
    ``B``; the components are constants. Computed in float32 (float64 stays float64), also under
    autocast.

    Args:
        S: ``[B, H, h, w]`` similarity maps (any float dtype, any device).
        connectivity: 8 (the papers) or 4.
        eps: added to every element of ``B`` (the papers' 1e-9); a finite number >= 0.
        check_finite: raise on NaN/inf in ``S``. Default: on CPU only, where checking costs no
            host-device synchronisation, and not while ``torch.compile`` traces (the check is a
            data-dependent branch, a graph break). Unchecked, a map holding NaN or inf gets a
            NaN entropy (and NaN gradients); a finite map's entropy is never negative.
        method: ``"auto"`` (the fused Triton op for CUDA maps of at most 64x64 pixels when Triton is
            installed, else the reference), ``"reference"`` (labelling op + scatter pooling; every device,
            every size) or ``"fused"`` (:mod:`sarvit.ops.triton_spatial_entropy`: one kernel forward, one
            backward; CUDA, or CPU under ``TRITON_INTERPRET=1``). Both give the same numbers.

    Returns:
        ``[B, H]`` entropies (float32, or float64 for float64 input).

    Example:
        >>> S = torch.zeros(1, 1, 4, 4); S[0, 0, 0, 0] = S[0, 0, 3, 3] = 1.0
        >>> spatial_entropy(S)  # two equal blobs: log 2
        tensor([[0.6931]])
    """
    check_maps(S, data=True)
    check_choice(connectivity, "connectivity", (8, 4))
    check_number(eps, "eps", low=0)
    if check_finite is None:
        check_finite = S.device.type == "cpu" and not torch.compiler.is_compiling()
    if check_finite and not bool(torch.isfinite(S).all()):
        raise SarvitError("S contains NaN or inf; spatial_entropy expects finite similarity maps")

    fused = _use_fused(method, S)
    with torch.autocast(device_type=S.device.type, enabled=False):
        maps = S if S.dtype == torch.float64 else S.float()
        batch, heads, h, w = maps.shape
        if fused:
            return fused_spatial_entropy(maps.reshape(batch * heads, h, w), connectivity, eps).reshape(batch, heads)
        flat = maps.reshape(batch * heads, h * w)
        above = flat - flat.mean(dim=1, keepdim=True)
        with torch.no_grad():
            labels = connected_components((above > 0).reshape(-1, h, w), connectivity).reshape(batch * heads, h * w)
        mass = torch.relu(above) + eps
        # Slot 0 collects the background; slots 1..h*w hold the components (empty slots stay 0).
        component_mass = mass.new_zeros(batch * heads, h * w + 1).scatter_add(1, labels, mass)[:, 1:]
        total = mass.sum(dim=1, keepdim=True)
        # With eps=0 a map with nothing above its mean has no mass at all: p = 0 (entropy 0), not 0/0.
        p = component_mass / torch.where(total == 0, torch.ones_like(total), total)  # NaN stays NaN
        present = p > 0
        # log of 1 where a slot is empty keeps both the value and the gradient of p*log(p) at 0.
        entropy = -(p * torch.log(torch.where(present, p, torch.ones_like(p)))).sum(dim=1)
        # A (near-)constant map can put rounding noise above its mean and give p a hair over 1: the
        # entropy is then 0, not -1e-6 (and never -0.0). NaN (from a non-finite map) stays NaN.
        entropy = torch.where((entropy > 0) | entropy.isnan(), entropy, torch.zeros_like(entropy))
    return entropy.reshape(batch, heads)


def _use_fused(method: str, S: torch.Tensor) -> bool:
    num_pixels = S.shape[-2] * S.shape[-1]
    if method == "auto":
        return S.device.type == "cuda" and num_pixels <= MAX_FUSED_PIXELS and fused_available()
    if method == "reference":
        return False
    if method != "fused":
        raise ValueError(f"method must be 'auto', 'reference' or 'fused', got {method!r}")
    if not fused_available() or num_pixels > MAX_FUSED_PIXELS or not (S.device.type == "cuda" or interpreting()):
        raise ValueError(f"method='fused' needs Triton, maps of at most {MAX_FUSED_PIXELS} pixels "
                         f"and a CUDA tensor (or TRITON_INTERPRET=1); got {tuple(S.shape[-2:])} maps on {S.device} "
                         f"(Triton {'usable' if fused_available() else 'not usable'})")
    return True


class SpatialEntropyLoss(nn.Module):
    """SAR's spatial-entropy loss (Eq. 9): the mean spatial entropy over batch and heads.

    Args:
        connectivity: 8 (the papers) or 4.
        eps: see :func:`spatial_entropy`.
        check_finite: see :func:`spatial_entropy`; a training step passes False (no host sync).

    Shape:
        input ``S [B, H, h, w]`` -> scalar (float32).

    Example:
        >>> loss_fn = SpatialEntropyLoss()
        >>> loss = loss_fn(torch.randn(2, 6, 14, 14, requires_grad=True))
        >>> loss.backward()
    """

    def __init__(self, connectivity: int = 8, eps: float = 1e-9, check_finite: bool | None = None) -> None:
        super().__init__()
        check_choice(connectivity, "connectivity", (8, 4))
        check_number(eps, "eps", low=0)
        self.connectivity = connectivity
        self.eps = eps
        self.check_finite = check_finite

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        return spatial_entropy(S, self.connectivity, self.eps, check_finite=self.check_finite).mean()

    def extra_repr(self) -> str:
        return f"connectivity={self.connectivity}, eps={self.eps}, check_finite={self.check_finite}"
