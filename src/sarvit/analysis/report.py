"""Per-head spatial statistics of the similarity maps: the numbers that tell a SAR model from a plain one.

A SAR-trained head concentrates its [CLS] similarity map in a few blobs: low spatial entropy, few
connected components of ``S > mean``. A plainly trained head scatters it: many components, high entropy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import check_maps, spatial_entropy
from ..ops import connected_components

__all__ = ["HeadStatistics", "head_statistics", "HeadStatsMeter", "format_head_table"]


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
        >>> stats.components, stats.entropy  # tensor([[2]]), tensor([[0.6931]])
    """
    check_maps(S)
    maps = S.detach().float()
    entropy = spatial_entropy(maps, connectivity)
    above = maps > maps.mean(dim=(-2, -1), keepdim=True)
    labels = connected_components(above, connectivity)
    components = labels.flatten(-2).amax(dim=-1)
    return HeadStatistics(entropy=entropy, components=components)


class HeadStatsMeter:
    """Means of :func:`head_statistics` per head over a dataset; device sums, one sync in :meth:`compute`.

    Example:
        >>> meter = HeadStatsMeter()
        >>> for images, _ in loader:
        ...     _, S = model(images.to(device), return_maps=True)
        ...     meter.update(S)
        >>> meter.compute()["per_head"][0]  # {"head": 0, "spatial_entropy": ..., "components": ...}
    """

    def __init__(self, connectivity: int = 8) -> None:
        self.connectivity = connectivity
        self.reset()

    def reset(self) -> None:
        self._entropy: torch.Tensor | None = None
        self._entropy_sq: torch.Tensor | None = None
        self._components: torch.Tensor | None = None
        self._single: torch.Tensor | None = None
        self._count = 0

    def update(self, S: torch.Tensor) -> HeadStatistics:
        """Add a batch of maps ``[B, H, h, w]``; returns that batch's :class:`HeadStatistics`."""
        stats = head_statistics(S, self.connectivity)
        self.add(stats)
        return stats

    def add(self, stats: HeadStatistics) -> None:
        entropy = stats.entropy.double()
        sums = (
            entropy.sum(dim=0),
            (entropy * entropy).sum(dim=0),
            stats.components.double().sum(dim=0),
            (stats.components == 1).double().sum(dim=0),
        )
        if self._entropy is None:
            self._entropy, self._entropy_sq, self._components, self._single = sums
        else:
            if sums[0].shape != self._entropy.shape:
                raise ValueError(f"HeadStatsMeter got {sums[0].shape[0]} heads after {self._entropy.shape[0]}; reset() between models")
            self._entropy = self._entropy + sums[0]
            self._entropy_sq = self._entropy_sq + sums[1]
            self._components = self._components + sums[2]
            self._single = self._single + sums[3]
        self._count += stats.entropy.shape[0]

    @property
    def count(self) -> int:
        return self._count

    def synchronize(self) -> None:
        """Sum the accumulators over the processes of ``torch.distributed`` (no-op without it); call
        before :meth:`compute` when each process saw its own shard (each must have updated once)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or self._entropy is None:
            return
        count = torch.tensor([float(self._count)], dtype=torch.float64, device=self._entropy.device)
        packed = torch.cat([self._entropy, self._entropy_sq, self._components, self._single, count])
        dist.all_reduce(packed)
        self._entropy, self._entropy_sq, self._components, self._single = packed[:-1].chunk(4)
        self._count = int(packed[-1].item())

    def compute(self) -> dict:
        """Plain-data summary: ``{"count", "per_head": [{"head", "spatial_entropy", "spatial_entropy_std",
        "components", "single_component"}], "mean": {"spatial_entropy", "components", "single_component"}}``.

        ``single_component`` is the fraction of maps that are one blob.
        """
        if not self._count:
            return {"count": 0, "per_head": [], "mean": {}}
        n = self._count
        entropy = (self._entropy / n).cpu()
        std = ((self._entropy_sq / n).cpu() - entropy**2).clamp_min(0.0).sqrt()
        components = (self._components / n).cpu()
        single = (self._single / n).cpu()
        per_head = [
            {
                "head": head,
                "spatial_entropy": float(entropy[head]),
                "spatial_entropy_std": float(std[head]),
                "components": float(components[head]),
                "single_component": float(single[head]),
            }
            for head in range(entropy.shape[0])
        ]
        mean = {
            "spatial_entropy": float(entropy.mean()),
            "components": float(components.mean()),
            "single_component": float(single.mean()),
        }
        return {"count": n, "per_head": per_head, "mean": mean}


def format_head_table(summary: dict) -> str:
    """A text table of :meth:`HeadStatsMeter.compute`'s result: one row per head and a mean row."""
    header = f"{'head':>6}  {'spatial entropy':>15}  {'(std)':>7}  {'components':>10}  {'one blob':>8}"
    lines = [header, "-" * len(header)]
    for row in summary["per_head"]:
        lines.append(
            f"{row['head']:>6}  {row['spatial_entropy']:>15.4f}  {row['spatial_entropy_std']:>7.4f}  "
            f"{row['components']:>10.2f}  {100 * row['single_component']:>7.1f}%"
        )
    if summary.get("mean"):
        mean = summary["mean"]
        lines.append("-" * len(header))
        lines.append(
            f"{'mean':>6}  {mean['spatial_entropy']:>15.4f}  {'':>7}  {mean['components']:>10.2f}  "
            f"{100 * mean['single_component']:>7.1f}%"
        )
    return "\n".join(lines)
