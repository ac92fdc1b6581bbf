"""Door checks shared by the regularizers: each failure is a SarvitError saying what was expected and found."""
from __future__ import annotations

import torch

from ..errors import SarvitError


def check_float_tensor(x: object, name: str, layout: str) -> torch.Tensor:
    """``x`` must be a floating-point tensor with ``len(layout.split(', '))`` dims (``layout`` as ``"B, H, h, w"``)."""
    dims = len(layout.split(", "))
    if not isinstance(x, torch.Tensor):
        raise SarvitError(f"{name} must be a torch.Tensor of shape [{layout}], got {type(x).__name__}")
    if x.dim() != dims:
        raise SarvitError(f"{name} must have shape [{layout}] ({dims} dims), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SarvitError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise SarvitError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return x


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Losses compute in float32; float64 input stays float64 (for exact checks)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
