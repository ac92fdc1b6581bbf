"""Segmentation quality of thresholded attention maps: the Jaccard protocol of DINO (Caron et al., 2021).

Per image and head: the last block's post-softmax [CLS] attention over the patches, thresholded to keep
60 % of its mass (:func:`mass_threshold`), upsampled (nearest) to the image; the Jaccard index (IoU) of that
foreground with the ground-truth foreground, void pixels ignored; the best head per image; the mean over the
set (:class:`AttentionJaccard`, a torchmetrics ``Metric``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from ..checks import check_maps, check_number, check_tensor
from ..errors import SarvitError

__all__ = ["mass_threshold", "jaccard", "segmentation_jaccard", "SegmentationJaccard", "AttentionJaccard"]


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
    check_number(keep, "keep", low=0, high=1, low_open=True)  # a mass fraction
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
    check_tensor(pred, "pred", "B, ...", dtype="bool")
    check_tensor(target, "target", dtype="bool")
    if valid is not None:
        check_tensor(valid, "valid", dtype="bool")
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
        >>> A = torch.tensor([[[[0.7, 0.1], [0.1, 0.1]]]])  # [1, 1, 2, 2]: 60 % of the mass in the top-left patch
        >>> foreground = torch.zeros(1, 4, 4, dtype=torch.bool); foreground[0, :2, :] = True  # the top half
        >>> segmentation_jaccard(A, foreground).per_head  # 4 shared pixels / 8 in the union
        tensor([[0.5000]])
    """
    check_maps(attention, "attention")
    check_tensor(foreground, "foreground", dtype="bool")
    batch, heads, k_h, k_w = attention.shape
    if foreground.dim() != 3 or foreground.shape[0] != batch:
        raise SarvitError(
            f"foreground must be [B, S, S] with B={batch} (attention {tuple(attention.shape)}), "
            f"got shape {tuple(foreground.shape)}"
        )
    if valid is not None:
        check_tensor(valid, "valid", dtype="bool")
        if valid.shape != foreground.shape:
            raise SarvitError(f"valid must have the foreground's shape {tuple(foreground.shape)}, got {tuple(valid.shape)}")
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


class AttentionJaccard(Metric):
    """DINO's number over a dataset: the mean best-head IoU of :func:`segmentation_jaccard`, and per-head means.

    States are device sums reduced over processes by torchmetrics (``dist_reduce_fx="sum"``); ``update``
    never reads a value back to the host, so it runs inside a training loop's validation pass for free.

    Args:
        num_heads: heads of the attention maps (``H`` of ``[B, H, k, k]``).
        keep: mass fraction kept by :func:`mass_threshold` (DINO: 0.6).

    Example:
        >>> metric = AttentionJaccard(num_heads=2)
        >>> A = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])  # [1, 2, 2, 2]
        >>> foreground = torch.tensor([[[True, False], [False, False]]])  # the top-left pixel
        >>> metric.update(A, foreground)
        >>> summary = metric.compute()  # summed over processes under torchrun
        >>> summary["jaccard"], summary["per_head"], summary["best_head_counts"]
        (tensor(1., dtype=torch.float64), tensor([1., 0.], dtype=torch.float64), tensor([1, 0]))
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_heads: int, keep: float = 0.6, **kwargs) -> None:
        super().__init__(**kwargs)
        check_number(keep, "keep", low=0, high=1, low_open=True)  # a mass fraction
        check_number(num_heads, "num_heads", low=1, integer=True)
        self.num_heads, self.keep = num_heads, float(keep)
        self.add_state("best_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("head_sum", torch.zeros(self.num_heads, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("best_head_count", torch.zeros(self.num_heads, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, attention, foreground: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> None:
        """Add a batch: ``attention [B, H, k, k]`` with ``foreground``/``valid [B, S, S]`` bool (as in
        :func:`segmentation_jaccard`), or a :class:`SegmentationJaccard` already computed (say, by a caller
        that also keeps the per-image values)."""
        if isinstance(attention, SegmentationJaccard):
            result = attention
        else:
            if foreground is None:
                raise SarvitError("foreground: AttentionJaccard.update expected the foreground masks with the attention maps")
            result = segmentation_jaccard(attention, foreground, valid, self.keep)
        heads = result.per_head.shape[1]
        if heads != self.num_heads:
            raise SarvitError(f"attention: AttentionJaccard was built for {self.num_heads} heads, got maps of {heads}")
        self.best_sum += result.best.detach().double().sum()
        self.head_sum += result.per_head.detach().double().sum(dim=0)
        # a comparison, not bincount: bincount on CUDA reads the max back to the host to size its output
        heads_range = torch.arange(heads, device=result.best_head.device)
        self.best_head_count += (result.best_head.detach()[:, None] == heads_range).sum(dim=0)
        self.count += result.best.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        """Tensors on the metric's device (no host read-back): ``{"jaccard": mean best-head IoU (float64 []),
        "per_head": mean IoU of each head (float64 [H]), "best_head_counts": how often each head was the best
        (int64 [H]), "count": images (int64 [])}``; the means are NaN when no image was seen. (torchmetrics squeezes
        one-element results: with one head, the per-head values are 0-d.)"""
        count = self.count.double()
        n = torch.where(count > 0, count, torch.full_like(count, float("nan")))
        return {"jaccard": self.best_sum / n, "per_head": self.head_sum / n,
                "best_head_counts": self.best_head_count.clone(), "count": self.count.clone()}


def nearest_index(source: int, target: int, device: torch.device | None = None) -> torch.Tensor:
    """``[target]`` int64: the source row each of ``target`` rows takes under ``F.interpolate(mode="nearest")``."""
    rows = torch.arange(source, dtype=torch.float32, device=device).reshape(1, 1, source, 1)
    return F.interpolate(rows, size=(target, 1), mode="nearest").reshape(target).long()
