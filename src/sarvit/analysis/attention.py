"""Last-block [CLS] attention maps: capture from a model, the DINO mass threshold, upsampling to pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import check_maps

__all__ = ["attention_maps", "mass_threshold", "upsample_maps"]


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


def mass_threshold(attention: torch.Tensor, keep: float = 0.6) -> torch.Tensor:
    """DINO's mass threshold: per map, the smallest set of top values holding ``keep`` of the map's mass.

    Each map's values are sorted in decreasing order and normalised by the map's sum; a value is kept
    while the mass of the values *before* it is below ``keep`` (so the kept set's mass reaches
    ``keep``: exactly DINO's ``cumsum(sorted ascending / sum) > 1 - keep``).

    Ties are resolved by value, never by position: every element equal to the smallest kept value
    is kept too, so the result is a plain threshold ``attention >= t`` per map and does not depend
    on sort stability or device. A uniform map is therefore kept entirely. Negative entries count
    as zero mass and a map whose mass is zero keeps nothing. The cumulative mass is computed in
    float64.

    Args:
        attention: ``[B, H, h, w]`` non-negative maps (post-softmax attention).
        keep: mass fraction to keep, in ``(0, 1]`` (DINO's ``--threshold``, 0.6).

    Returns:
        ``[B, H, h, w]`` bool mask of the kept positions.

    Example:
        >>> a = torch.tensor([0.5, 0.3, 0.1, 0.1]).reshape(1, 1, 2, 2)
        >>> mass_threshold(a, 0.6).flatten().tolist()  # 0.5 < 0.6, 0.5 + 0.3 >= 0.6
        [True, True, False, False]
    """
    check_maps(attention, "attention")
    if not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep must be a mass fraction in (0, 1], got {keep!r}")
    batch, heads, h, w = attention.shape
    values = attention.detach().reshape(batch, heads, h * w).to(torch.float64).clamp_min(0.0)
    ordered, _ = values.sort(dim=-1, descending=True)
    cumulative = ordered.cumsum(dim=-1)
    total = cumulative[..., -1:]
    before = cumulative - ordered  # mass strictly before each sorted position
    kept_sorted = before < keep * total  # a prefix of the sorted order (``before`` is non-decreasing)
    count = kept_sorted.sum(dim=-1, keepdim=True)
    smallest_kept = ordered.gather(-1, (count - 1).clamp_min(0))
    mask = (values >= smallest_kept) & (count > 0)
    return mask.reshape(batch, heads, h, w)


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


def nearest_index(source: int, target: int, device: torch.device | None = None) -> torch.Tensor:
    """``[target]`` int64: the source row each of ``target`` rows takes under ``F.interpolate(mode="nearest")``."""
    rows = torch.arange(source, dtype=torch.float32, device=device).reshape(1, 1, source, 1)
    return F.interpolate(rows, size=(target, 1), mode="nearest").reshape(target).long()
