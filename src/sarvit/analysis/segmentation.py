"""Segmentation quality of thresholded attention maps: the Jaccard protocol of DINO (Caron et al., 2021).

Per image and head: the last block's post-softmax [CLS] attention over the patches, thresholded to keep
60 % of its mass (:func:`~sarvit.analysis.mass_threshold`), upsampled (nearest) to the image; the
Jaccard index (IoU) of that foreground with the ground-truth foreground, void pixels ignored; the best
head per image; the mean over the set (:class:`JaccardMeter`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import check_maps
from .attention import mass_threshold, nearest_index

__all__ = ["jaccard", "segmentation_jaccard", "SegmentationJaccard", "JaccardMeter"]


def _check_mask(mask: torch.Tensor, name: str) -> None:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got dtype {mask.dtype}")


def jaccard(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    empty: float = 1.0,
) -> torch.Tensor:
    """Jaccard index (IoU) of boolean masks, per leading element, ignoring invalid pixels.

    ``IoU = |pred & target & valid| / |(pred | target) & valid|``. When the union is empty (both
    masks empty on the valid pixels) the masks agree perfectly and the result is ``empty`` (1.0).

    Args:
        pred: ``[B, ...]`` bool.
        target: bool, broadcastable to ``pred`` (e.g. ``[B, 1, S, S]`` against ``[B, H, S, S]``).
        valid: bool broadcastable to ``pred``, ``True`` where the pixel counts (e.g. not VOC's void
            255); ``None`` counts every pixel.
        empty: the value of 0/0.

    Returns:
        float32 ``[B]``: one IoU per element of the first dim, taken over all other dims (flatten
        ``[B, H, S, S]`` to ``[B * H, S, S]`` for one IoU per head).

    Example:
        >>> pred = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
        >>> target = torch.tensor([[0, 1, 1, 0]], dtype=torch.bool)
        >>> jaccard(pred, target)  # 1 shared pixel / 3 in the union
        tensor([0.3333])
    """
    _check_mask(pred, "pred")
    _check_mask(target, "target")
    if valid is not None:
        _check_mask(valid, "valid")
    if pred.dim() < 1:
        raise ValueError("pred must have a leading batch dim [B, ...]")
    target = target.to(pred.device)
    inter = pred & target
    union = pred | target
    if valid is not None:
        valid = valid.to(pred.device)
        inter, union = inter & valid, union & valid
    inter, union = torch.broadcast_tensors(inter, union)
    inter = inter.reshape(inter.shape[0], -1).sum(dim=1).float()
    union = union.reshape(union.shape[0], -1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.full_like(union, float(empty)))


@dataclass
class SegmentationJaccard:
    """What :func:`segmentation_jaccard` returns (all tensors on the attention's device).

    Attributes:
        per_head: ``[B, H]`` IoU of each head's thresholded map with the foreground.
        best: ``[B]`` the best head's IoU per image (DINO's number, averaged over the set).
        best_head: ``[B]`` int64 index of that head (the first one on ties).
        masks: ``[B, H, k, k]`` bool thresholded patch maps.
    """

    per_head: torch.Tensor
    best: torch.Tensor
    best_head: torch.Tensor
    masks: torch.Tensor


def segmentation_jaccard(
    attention: torch.Tensor,
    foreground: torch.Tensor,
    valid: torch.Tensor | None = None,
    keep: float = 0.6,
    *,
    empty: float = 1.0,
) -> SegmentationJaccard:
    """DINO's attention-map segmentation Jaccard for a batch, every head at once.

    Each head's map is thresholded with :func:`mass_threshold` (``keep`` of its mass), upsampled with
    nearest interpolation from the ``k x k`` patch grid to the ``S x S`` mask (``F.interpolate``
    semantics: each patch covers its ``S / k`` pixels), and compared with the foreground on the valid
    pixels. The upsampled masks are never materialised: the foreground and valid pixels are counted
    per patch with two small matrix products, so memory is ``O(B H k^2 + B S^2)`` and the result equals
    the pixel-level :func:`jaccard` of the upsampled masks exactly.

    Args:
        attention: ``[B, H, k, k]`` post-softmax [CLS] attention over the patches (any device).
        foreground: ``[B, S, S]`` (or ``[B, S_h, S_w]``) bool ground-truth foreground.
        valid: bool like ``foreground``, False on ignored pixels (VOC void); ``None``: all valid.
        keep: mass fraction kept by the threshold (DINO: 0.6).
        empty: IoU when prediction and foreground are both empty on the valid pixels.

    Returns:
        :class:`SegmentationJaccard` with ``per_head [B, H]``, ``best [B]``, ``best_head [B]``, ``masks``.

    Example:
        >>> out = segmentation_jaccard(A, fg_mask, valid)  # A: [B, H, 14, 14], masks [B, 224, 224]
        >>> out.best.mean()
    """
    check_maps(attention, "attention")
    _check_mask(foreground, "foreground")
    batch, heads, k_h, k_w = attention.shape
    if foreground.dim() != 3 or foreground.shape[0] != batch:
        raise ValueError(
            f"foreground must be [B, S, S] with B={batch} (attention {tuple(attention.shape)}), "
            f"got shape {tuple(foreground.shape)}"
        )
    if valid is not None:
        _check_mask(valid, "valid")
        if valid.shape != foreground.shape:
            raise ValueError(f"valid must have the foreground's shape {tuple(foreground.shape)}, got {tuple(valid.shape)}")
    device = attention.device
    size_h, size_w = foreground.shape[-2:]
    masks = mass_threshold(attention, keep)

    foreground = foreground.to(device, non_blocking=True)
    valid = torch.ones_like(foreground) if valid is None else valid.to(device, non_blocking=True)
    target = (foreground & valid).float()
    # Row/column one-hot maps pixel -> patch under nearest interpolation: counts = R_h @ pixels @ R_w^T.
    rows = (nearest_index(k_h, size_h, device)[None] == torch.arange(k_h, device=device)[:, None]).float()  # [k_h, S_h]
    cols = (nearest_index(k_w, size_w, device)[:, None] == torch.arange(k_w, device=device)[None]).float()  # [S_w, k_w]
    target_per_patch = rows @ target @ cols  # [B, k_h, k_w] foreground pixels in each patch
    valid_per_patch = rows @ valid.float() @ cols  # [B, k_h, k_w] valid pixels in each patch

    predicted = masks.float()
    inter = (predicted * target_per_patch[:, None]).sum(dim=(-2, -1))  # [B, H]
    pred_area = (predicted * valid_per_patch[:, None]).sum(dim=(-2, -1))  # [B, H]
    target_area = target.sum(dim=(-2, -1))[:, None]  # [B, 1]
    union = pred_area + target_area - inter
    per_head = torch.where(union > 0, inter / union.clamp_min(1.0), torch.full_like(union, float(empty)))
    best, best_head = per_head.max(dim=1)
    return SegmentationJaccard(per_head=per_head, best=best, best_head=best_head, masks=masks)


class JaccardMeter:
    """Accumulates :func:`segmentation_jaccard` over a dataset: the mean best-head IoU and per-head IoUs.

    Sums stay on the device of the first batch; nothing is synchronised with the host until
    :meth:`compute`, so it can run inside a training loop's validation pass without slowing it.

    Example:
        >>> meter = JaccardMeter(keep=0.6)
        >>> for images, _, masks in loader:                  # SyntheticObjects(return_mask=True)
        ...     _, A = model(images.to(device), return_attention=True)
        ...     meter.update(A, masks)
        >>> meter.compute()["jaccard"]                       # mean over images of the best head's IoU
    """

    def __init__(self, keep: float = 0.6) -> None:
        if not 0.0 < float(keep) <= 1.0:
            raise ValueError(f"keep must be a mass fraction in (0, 1], got {keep!r}")
        self.keep = float(keep)
        self.reset()

    def reset(self) -> None:
        self._best_sum: torch.Tensor | None = None
        self._head_sum: torch.Tensor | None = None
        self._best_head_count: torch.Tensor | None = None
        self._count = 0

    def update(
        self, attention: torch.Tensor, foreground: torch.Tensor, valid: torch.Tensor | None = None
    ) -> SegmentationJaccard:
        """Add a batch (shapes as in :func:`segmentation_jaccard`); returns that batch's result."""
        result = segmentation_jaccard(attention, foreground, valid, self.keep)
        self.add(result)
        return result

    def add(self, result: SegmentationJaccard) -> None:
        """Add an already computed :class:`SegmentationJaccard`."""
        batch, heads = result.per_head.shape
        best_sum = result.best.detach().double().sum()
        head_sum = result.per_head.detach().double().sum(dim=0)
        # a comparison, not bincount: bincount on CUDA reads the max back to the host to size its output
        heads_range = torch.arange(heads, device=result.best_head.device)
        best_head_count = (result.best_head.detach()[:, None] == heads_range).sum(dim=0)
        if self._head_sum is None:
            self._best_sum, self._head_sum, self._best_head_count = best_sum, head_sum, best_head_count
        else:
            if head_sum.shape != self._head_sum.shape:
                raise ValueError(f"JaccardMeter got {heads} heads after {self._head_sum.shape[0]}; reset() between models")
            self._best_sum = self._best_sum + best_sum.to(self._best_sum.device)
            self._head_sum = self._head_sum + head_sum.to(self._head_sum.device)
            self._best_head_count = self._best_head_count + best_head_count.to(self._best_head_count.device)
        self._count += batch

    @property
    def count(self) -> int:
        return self._count

    def synchronize(self) -> None:
        """Sum the accumulators over the processes of ``torch.distributed`` (no-op without it); call
        before :meth:`compute` when each process evaluated its own shard. Every process must have
        called :meth:`update` at least once."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or self._head_sum is None:
            return
        count = torch.tensor([float(self._count)], dtype=torch.float64, device=self._head_sum.device)
        packed = torch.cat([self._best_sum.reshape(1), self._head_sum, self._best_head_count.double(), count])
        dist.all_reduce(packed)
        heads = self._head_sum.shape[0]
        self._best_sum, self._head_sum = packed[0], packed[1:1 + heads]
        self._best_head_count = packed[1 + heads:1 + 2 * heads].round().long()
        self._count = int(packed[-1].item())

    def compute(self) -> dict:
        """``{"jaccard": mean best-head IoU, "per_head": [mean IoU of each head], "best_head_counts":
        [how often each head was the best], "count": images}`` as plain Python numbers (NaN when empty)."""
        if not self._count:
            return {"jaccard": float("nan"), "per_head": [], "best_head_counts": [], "count": 0}
        return {
            "jaccard": float(self._best_sum) / self._count,
            "per_head": [float(v) / self._count for v in self._head_sum.cpu()],
            "best_head_counts": [int(v) for v in self._best_head_count.cpu()],
            "count": self._count,
        }
