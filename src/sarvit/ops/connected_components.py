"""Connected-component labelling of batches of boolean maps.

Two exact implementations share one contract (labels equal ``scipy.ndimage.label`` map by map):

* CPU: every map is stacked into one tall image, separated by a background row, and labelled by a
  single ``scipy.ndimage.label`` call; raster order of the stack is raster order of each map, so
  shifting each map's labels by the number of components above it gives scipy's per-map numbering.
* Tensor path (any device): a fixed, shape-derived number of rounds of min-label hooking with
  full pointer jumping (see :func:`_label_by_hooking`). No data-dependent control flow, so no
  host-device synchronisation and no loop over maps.
* Triton path (CUDA): the same hooking run to convergence inside one kernel launch, one program
  per map (:mod:`sarvit.ops.triton_components`). The first call on each device checks it once
  against the tensor path (a one-off synchronisation) and falls back to the tensor path, with a
  warning, if they disagree.

``method="auto"`` (and ``"scipy"``) goes through the custom op ``torch.ops.sarvit.connected_components``
(``(Tensor mask, int connectivity=8) -> Tensor``): a CPU kernel (scipy), a CUDA kernel (the verified
Triton kernel, else the tensor path) and a fake kernel, so ``torch.compile`` and ``torch.export``
trace through it without a graph break and without running it.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..checks import check_choice, check_number, check_tensor
from ..errors import SarvitError
from .triton_components import MAX_TRITON_PIXELS, label_with_triton, triton_available

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
        method: ``"auto"`` (scipy on CPU; on CUDA Triton when available and verified, else the
            tensor algorithm), ``"scipy"`` (CPU only), ``"tensor"`` (any device) or ``"triton"``
            (CUDA, maps of at most 4,096 pixels).

    Returns:
        ``[..., h, w]`` int64 tensor on ``mask``'s device: 0 is background, the components of each
        map are 1..n in raster order of their first pixel.

    Example:
        >>> m = torch.tensor([[1, 0, 1], [0, 0, 1]], dtype=torch.bool)
        >>> connected_components(m, connectivity=4)
        tensor([[1, 0, 2],
                [0, 0, 2]])
    """
    check_tensor(mask, "mask", "..., h, w", dtype="bool", data=True)
    check_choice(connectivity, "connectivity", tuple(_STRUCTURES))
    check_choice(method, "method", _METHODS)
    if method == "scipy" and mask.device.type != "cpu":
        raise SarvitError(f"method='scipy' needs a CPU mask, got one on {mask.device}")
    h, w = mask.shape[-2:]
    if method == "triton" and (mask.device.type != "cuda" or not triton_available() or h * w > MAX_TRITON_PIXELS):
        raise SarvitError(f"method='triton' needs a CUDA mask, Triton and maps of at most {MAX_TRITON_PIXELS} "
                          f"pixels; got a {h}x{w} mask on {mask.device} (Triton "
                          f"{'installed' if triton_available() else 'not installed'})")

    if method == "scipy" or (method == "auto" and mask.device.type in ("cpu", "cuda")):
        return torch.ops.sarvit.connected_components(mask, connectivity)
    return _label_all(mask, connectivity, label_with_triton if method == "triton" else _label_by_hooking)


_METHODS = ("auto", "scipy", "tensor", "triton")
_triton_verified: dict[torch.device, bool] = {}


def _auto_method(device: torch.device, num_pixels: int) -> str:
    if device.type == "cpu":
        return "scipy"
    if device.type == "cuda" and num_pixels <= MAX_TRITON_PIXELS and _triton_works_on(device):
        return "triton"
    return "tensor"


def _triton_works_on(device: torch.device) -> bool:
    """Check the Triton kernel once per device against the tensor path on random maps."""
    if device not in _triton_verified:
        works = triton_available()
        if works:
            generator = torch.Generator().manual_seed(0)
            try:
                for shape, density in (((96, 14, 14), 0.5), ((32, 28, 28), 0.65), ((16, 9, 23), 0.35)):
                    maps = (torch.rand(shape, generator=generator) < density).to(device)
                    for connectivity in (8, 4):
                        expected = _label_by_hooking(maps, connectivity)
                        works = works and torch.equal(label_with_triton(maps, connectivity), expected)
            except Exception as error:  # a kernel that fails to compile here must not stop training
                warnings.warn(f"sarvit: the Triton connected-components kernel failed on {device} ({error}); "
                              "using the tensor path")
                works = False
            else:
                if not works:
                    warnings.warn(f"sarvit: the Triton connected-components kernel disagreed with the tensor "
                                  f"path on {device}; using the tensor path")
        _triton_verified[device] = works
    return _triton_verified[device]


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
    check_number(num_pixels, "num_pixels", low=0, integer=True)
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
        raise SarvitError(f"mask: maps of more than 2**24 pixels are not supported by the tensor path, got {h}x{w}")
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


@torch.library.custom_op("sarvit::connected_components", mutates_args=(), device_types="cpu")
def _connected_components_op(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    """The op's CPU kernel: ``[..., h, w]`` bool -> int64 labels, one scipy call for the batch."""
    return _label_all(mask, connectivity, _label_with_scipy)


@_connected_components_op.register_kernel("cuda")
def _connected_components_cuda(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    h, w = mask.shape[-2:]
    labeller = label_with_triton if _auto_method(mask.device, h * w) == "triton" else _label_by_hooking
    return _label_all(mask, connectivity, labeller)


@_connected_components_op.register_fake
def _connected_components_fake(mask: torch.Tensor, connectivity: int = 8) -> torch.Tensor:
    return mask.new_empty(mask.shape, dtype=torch.long)


def _label_all(mask: torch.Tensor, connectivity: int, labeller) -> torch.Tensor:
    if mask.numel() == 0:
        return torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    h, w = mask.shape[-2:]
    return labeller(mask.reshape(-1, h, w), connectivity).reshape(mask.shape)
