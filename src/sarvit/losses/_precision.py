"""The losses' compute dtype: float32, also under autocast; float64 input stays float64 (for exact checks)."""
from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """Losses compute in float32; float64 input stays float64 (for exact checks)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
