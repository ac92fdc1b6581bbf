"""Last-block [CLS] attention maps: capture from a model, upsampling to pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import check_maps

__all__ = ["attention_maps", "upsample_maps"]


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` (built by :func:`sarvit.create_model`) once and return its last-block [CLS] maps.

    ``images`` are moved to the model's device. The model is used as it is (call ``model.eval()``
    first for deterministic maps).

    Args:
        model: a sarvit model (``model(x, return_maps=True, return_attention=True)``).
        images: ``[B, 3, S, S]`` normalised images.

    Returns:
        ``(logits [B, classes], S [B, H, k, k], A [B, H, k, k])``: ``S`` the pre-softmax similarity of
        the [CLS] query with every patch key (what the SAR loss and :func:`head_statistics` use), ``A``
        the post-softmax [CLS] attention restricted to the patch columns (what DINO's protocol uses),
        both float32.

    Example:
        >>> model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8).eval()
        >>> logits, S, A = attention_maps(model, torch.randn(2, 3, 32, 32))  # S, A: [2, 3, 4, 4]
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [B, 3, S, S], got {shape}")
    device = next(model.parameters()).device
    logits, S, A = model(images.to(device, non_blocking=True), return_maps=True, return_attention=True)
    return logits, S.float(), A.float()


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of patch-grid maps ``[B, H, k, k]`` to pixels ``[B, H, *size]``.

    For an image side that is a multiple of the grid this repeats every patch value over its patch
    (DINO's ``interpolate(scale_factor=patch_size, mode="nearest")``); otherwise it is
    ``F.interpolate(size=size, mode="nearest")``. Bool maps stay bool.
    """
    check_maps(maps.float() if maps.dtype == torch.bool else maps, "maps")
    size = (size, size) if isinstance(size, int) else tuple(size)
    source = maps.to(torch.uint8) if maps.dtype == torch.bool else maps
    out = F.interpolate(source, size=size, mode="nearest")
    return out.bool() if maps.dtype == torch.bool else out
