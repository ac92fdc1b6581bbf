"""Per-head spatial statistics of the similarity maps: the numbers that tell a SAR model from a plain one.

A SAR-trained head concentrates its [CLS] similarity map in a few blobs: low spatial entropy, few
connected components of ``S > mean``. A plainly trained head scatters it: many components, high entropy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics import Metric

from ..checks import check_choice, check_maps, check_number
from ..errors import SarvitError
from ..losses import spatial_entropy
from ..ops import connected_components

__all__ = ["HeadStatistics", "head_statistics", "HeadStats"]


@dataclass
class HeadStatistics:
    """Per-map statistics from :func:`head_statistics` (tensors on the maps' device).

    Attributes:
        entropy: ``[B, H]`` float32 spatial entropy (Eq. 5-8, :func:`sarvit.spatial_entropy`).
        components: ``[B, H]`` int64 number of connected components of ``S > mean(S)``.
    """

    entropy: torch.Tensor
    components: torch.Tensor


@torch.no_grad()
def head_statistics(S: torch.Tensor, connectivity: int = 8) -> HeadStatistics:
    """Spatial entropy and component count of every map, with the loss's own definition of a component.

    The components are those of ``S > mean(S)`` per map (``connectivity``-connected, 8 as in the
    papers), found by :func:`sarvit.connected_components`; their number is the largest label of the
    map (labels are 1..n). A map with nothing above its mean has 0 components and entropy 0.

    Args:
        S: ``[B, H, h, w]`` pre-softmax [CLS] similarity maps (``model(x, return_maps=True)[1]``).
        connectivity: 8 or 4.

    Returns:
        :class:`HeadStatistics` with ``entropy [B, H]`` and ``components [B, H]``.

    Example:
        >>> S = torch.zeros(1, 1, 4, 4); S[0, 0, 0, 0] = S[0, 0, 3, 3] = 1.0
        >>> stats = head_statistics(S)  # two one-pixel blobs
        >>> stats.components, stats.entropy
        (tensor([[2]]), tensor([[0.6931]]))
    """
    check_maps(S, data=True)
    maps = S.detach().float()
    entropy = spatial_entropy(maps, connectivity)
    above = maps > maps.mean(dim=(-2, -1), keepdim=True)
    labels = connected_components(above, connectivity)
    components = labels.flatten(-2).amax(dim=-1)
    return HeadStatistics(entropy=entropy, components=components)


class HeadStats(Metric):
    """Per-head means of :func:`head_statistics` over a dataset, summed over processes by torchmetrics.

    Args:
        num_heads: heads of the maps (``H`` of ``[B, H, h, w]``).
        connectivity: 8 or 4.

    Example:
        >>> metric = HeadStats(num_heads=2)
        >>> S = torch.zeros(1, 2, 4, 4); S[0, :, 0, 0] = S[0, 0, 3, 3] = 1.0  # head 0: two blobs, head 1: one
        >>> metric.update(S)
        >>> metric.update(torch.zeros(1, 2, 4, 4))  # nothing above the mean: no blob
        >>> summary = metric.compute()
        >>> summary["count"], summary["components"], summary["spatial_entropy"]
        (tensor(2), tensor([1.0000, 0.5000], dtype=torch.float64), tensor([0.3466, 0.0000], dtype=torch.float64))
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, num_heads: int, connectivity: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        check_number(num_heads, "num_heads", low=1, integer=True)
        check_choice(connectivity, "connectivity", (8, 4))
        self.num_heads, self.connectivity = num_heads, connectivity
        for name in ("entropy", "entropy_sq", "components", "single"):
            self.add_state(name, torch.zeros(self.num_heads, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, S) -> None:
        """Add a batch of maps ``S [B, H, h, w]``, or a :class:`HeadStatistics` already computed."""
        stats = S if isinstance(S, HeadStatistics) else head_statistics(S, self.connectivity)
        heads = stats.entropy.shape[1]
        if heads != self.num_heads:
            raise SarvitError(f"S: HeadStats was built for {self.num_heads} heads, got maps of {heads}")
        entropy = stats.entropy.double()
        self.entropy += entropy.sum(dim=0)
        self.entropy_sq += (entropy * entropy).sum(dim=0)
        self.components += stats.components.double().sum(dim=0)
        self.single += (stats.components == 1).double().sum(dim=0)
        self.count += stats.entropy.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        """Per-head means over the maps seen, as tensors on the metric's device (no host read-back):
        ``{"count": int64 [], "spatial_entropy", "spatial_entropy_std", "components", "single_component":
        float64 [H]}``; ``single_component`` is the fraction of maps that are one blob. NaN when empty. (torchmetrics squeezes
        one-element results: with one head, the per-head values are 0-d.)"""
        count = self.count.double()
        n = torch.where(count > 0, count, torch.full_like(count, float("nan")))
        entropy = self.entropy / n
        return {
            "count": self.count.clone(),
            "spatial_entropy": entropy,
            "spatial_entropy_std": (self.entropy_sq / n - entropy**2).clamp_min(0.0).sqrt(),
            "components": self.components / n,
            "single_component": self.single / n,
        }
