"""Connected-component labelling of batches of boolean maps.

Two exact implementations share one contract (labels equal ``scipy.ndimage.label`` map by map):

* CPU: every map is stacked into one tall image, separated by a background row, and labelled by a
  single ``scipy.ndimage.label`` call; raster order of the stack is raster order of each map, so
  shifting each map's labels by the number of components above it gives scipy's per-map numbering.
* Tensor path (CUDA, and CPU on request): a fixed, shape-derived number of rounds of min-label
  hooking with full pointer jumping (see :func:`_label_by_hooking`). No data-dependent control
  flow, so no host-device synchronisation and no loop over maps.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = ["connected_components", "hooking_rounds"]

_STRUCTURES = {
    8: np.ones((3, 3), dtype=bool),
    4: ndimage.generate_binary_structure(2, 1),
}


def connected_components(mask: torch.Tensor, connectivity: int = 8, *, method: str = "auto") -> torch.Tensor:
    """Label the connected components of boolean maps, numbered exactly as ``scipy.ndimage.label``.

    Args:
        mask: ``[..., h, w]`` bool tensor; any number of leading dims, any ``h, w >= 1``.
        connectivity: 8 (3x3 neighbourhood, diagonals connect) or 4 (edge neighbours only).
        method: ``"auto"`` (scipy on CPU, tensor algorithm on other devices), ``"scipy"`` (CPU only)
            or ``"tensor"`` (any device; what CUDA runs).

    Returns:
        ``[..., h, w]`` int64 tensor on ``mask``'s device: 0 is background, the components of each
        map are 1..n in raster order of their first pixel.

    Example:
        >>> m = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)
        >>> connected_components(m, connectivity=4)
        tensor([[1, 0, 2],
                [0, 0, 2]])
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"connected_components expects a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"connected_components expects a bool mask [..., h, w], got dtype {mask.dtype}")
    if mask.dim() < 2:
        raise ValueError(f"connected_components expects a mask of shape [..., h, w], got shape {tuple(mask.shape)}")
    if connectivity not in _STRUCTURES:
        raise ValueError(f"connectivity must be 8 or 4, got {connectivity!r}")
    if method not in ("auto", "scipy", "tensor"):
        raise ValueError(f"method must be 'auto', 'scipy' or 'tensor', got {method!r}")
    if method == "scipy" and mask.device.type != "cpu":
        raise ValueError(f"method='scipy' needs a CPU mask, got one on {mask.device}")

    h, w = mask.shape[-2:]
    if mask.numel() == 0:
        return torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    maps = mask.reshape(-1, h, w)
    use_scipy = method == "scipy" or (method == "auto" and mask.device.type == "cpu")
    labels = _label_with_scipy(maps, connectivity) if use_scipy else _label_by_hooking(maps, connectivity)
    return labels.reshape(mask.shape)


def _label_with_scipy(maps: torch.Tensor, connectivity: int) -> torch.Tensor:
    """``[N, h, w]`` bool (CPU) -> ``[N, h, w]`` int64, one scipy call for the whole batch."""
    n_maps, h, w = maps.shape
    # A background row under each map keeps components from crossing into the next map.
    stack = np.zeros((n_maps, h + 1, w), dtype=bool)
    stack[:, :h] = maps.detach().numpy()
    labels, _ = ndimage.label(stack.reshape(n_maps * (h + 1), w), structure=_STRUCTURES[connectivity])
    labels = labels.reshape(n_maps, h + 1, w)[:, :h]
    # Global labels are consecutive in map order: subtract the components of all earlier maps.
    last_label = np.maximum.accumulate(labels.reshape(n_maps, -1).max(axis=1))
    offset = np.concatenate([[0], last_label[:-1]]).astype(labels.dtype)
    labels = labels - offset[:, None, None] * (labels > 0)
    return torch.from_numpy(labels.astype(np.int64))


def hooking_rounds(num_pixels: int) -> int:
    """Rounds of hooking after which every component of a map of ``num_pixels`` pixels is one tree.

    Each round, every tree that is not a local minimum among its neighbouring trees hooks onto one,
    and a local minimum that nobody hooked onto has a smaller neighbour in the next round, so within
    two rounds every tree merges with another: the number of trees per component at least halves
    every two rounds.
    """
    return 2 * math.ceil(math.log2(num_pixels)) if num_pixels > 1 else 0


def _neighbourhood_min(labels: torch.Tensor, connectivity: int) -> torch.Tensor:
    """Min over each pixel's closed neighbourhood. ``labels [N, h, w]`` float (integers < 2**24)."""
    if connectivity == 8:
        return -F.max_pool2d(-labels.unsqueeze(1), kernel_size=3, stride=1, padding=1).squeeze(1)
    padded = F.pad(labels, (1, 1, 1, 1), value=float("inf"))
    out = torch.minimum(labels, padded[:, :-2, 1:-1])
    out = torch.minimum(out, padded[:, 2:, 1:-1])
    out = torch.minimum(out, padded[:, 1:-1, :-2])
    return torch.minimum(out, padded[:, 1:-1, 2:])


def _label_by_hooking(maps: torch.Tensor, connectivity: int) -> torch.Tensor:
    """``[N, h, w]`` bool -> ``[N, h, w]`` int64 with tensor operations only.

    ``parent[p]`` points to a pixel of p's tree with a smaller raster index; background pixels and
    a sentinel slot ``n`` point to ``n``. A round: every foreground pixel proposes the smallest root
    in its neighbourhood to its own root (scatter-amin), then ``ceil(log2 n)`` pointer jumps flatten
    every tree to a star. After :func:`hooking_rounds` rounds each component is one star rooted at
    its first pixel in raster order, which is exactly scipy's numbering key.
    """
    n_maps, h, w = maps.shape
    n = h * w
    if n >= 2**24:
        raise ValueError(f"maps of more than 2**24 pixels are not supported by the tensor path, got {h}x{w}")
    device = maps.device
    foreground = torch.cat([maps.reshape(n_maps, n), maps.new_zeros(n_maps, 1)], dim=1)
    index = torch.arange(n + 1, device=device).expand(n_maps, n + 1)
    sentinel = torch.full_like(index, n)
    parent = torch.where(foreground, index, sentinel)
    jumps = math.ceil(math.log2(n + 1))
    for _ in range(hooking_rounds(n)):
        grid = parent[:, :n].reshape(n_maps, h, w).float()
        proposal = _neighbourhood_min(grid, connectivity).reshape(n_maps, n).long()
        proposal = torch.cat([proposal, sentinel[:, :1]], dim=1)
        proposal = torch.where(foreground, proposal, sentinel)
        parent = parent.scatter_reduce(1, parent, proposal, reduce="amin", include_self=True)
        for _ in range(jumps):
            parent = parent.gather(1, parent)
    is_root = foreground & (parent == index)
    rank = torch.cumsum(is_root, dim=1)
    labels = torch.where(foreground, rank.gather(1, parent), 0)
    return labels[:, :n].reshape(n_maps, h, w)
