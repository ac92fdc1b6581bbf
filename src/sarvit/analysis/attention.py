"""Last-block [CLS] attention maps, captured from a model."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["attention_maps"]


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
        >>> import sarvit
        >>> model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8).eval()
        >>> logits, S, A = attention_maps(model, torch.randn(2, 3, 32, 32))
        >>> tuple(S.shape), tuple(A.shape)
        ((2, 3, 4, 4), (2, 3, 4, 4))
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor [B, 3, S, S], got {shape}")
    device = next(model.parameters()).device
    logits, S, A = model(images.to(device, non_blocking=True), return_maps=True, return_attention=True)
    return logits, S.float(), A.float()
