"""Connected components on CUDA in one Triton kernel launch: one program per map.

Each program runs the hooking algorithm of :func:`sarvit.ops.connected_components._label_by_hooking`
to convergence inside the kernel (the loop condition is a block-wide reduction, so the host never
waits), keeping the map's parent pointers in a per-map scratch row. Barriers separate every read
phase from the write phase that follows it.

The launch is registered as ``torch.ops.sarvit.connected_components_triton`` through
``torch.library.triton_op`` + ``wrap_triton`` (torch >= 2.6), so ``torch.compile`` sees the kernel
itself instead of an opaque call; on an older torch it is a plain function.
"""
from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the tensor path serves when Triton is absent
    triton = None

__all__ = ["triton_available", "label_with_triton", "MAX_TRITON_PIXELS"]

MAX_TRITON_PIXELS = 4096


def triton_available() -> bool:
    return triton is not None


if triton is not None:

    @triton.jit
    def _neighbour_min(buf, labels, fg, y, x, h, w, SENTINEL: tl.constexpr, CONN8: tl.constexpr):
        best = labels
        for dy in tl.static_range(-1, 2):
            for dx in tl.static_range(-1, 2):
                # edge neighbours always, diagonal ones for 8-connectivity (no chained and/or: Triton rejects them)
                if dy * dy + dx * dx == 1 or (CONN8 and dy * dx != 0):
                    ny = y + dy
                    nx = x + dx
                    ok = fg & (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
                    other = tl.load(buf + ny * w + nx, mask=ok, other=SENTINEL)
                    best = tl.minimum(best, other)
        return best

    @triton.jit
    def hook_to_stars(buf, fg, offs, h, w, BLOCK: tl.constexpr, CONN8: tl.constexpr):
        """Hook the foreground pixels of one map (``fg [BLOCK]``) into stars; returns each pixel's root.

        ``buf`` is the map's ``BLOCK``-slot int32 scratch row; the root of a component is its first
        pixel in raster order (scipy's numbering key); background pixels get ``BLOCK``.
        """
        y = offs // w
        x = offs - y * w
        parent = tl.where(fg, offs, BLOCK)  # BLOCK > every pixel index: the background's parent
        tl.store(buf + offs, parent)
        tl.debug_barrier()
        proposal = _neighbour_min(buf, parent, fg, y, x, h, w, BLOCK, CONN8)
        hooking = tl.max(tl.where(fg & (proposal < parent), 1, 0), axis=0)
        while hooking > 0:
            tl.debug_barrier()
            tl.atomic_min(buf + parent, proposal, mask=fg)
            tl.debug_barrier()
            jumping = hooking  # positive here; keeps the loop variable an int32 tensor
            while jumping > 0:
                grand = tl.load(buf + parent, mask=fg, other=BLOCK)
                jumping = tl.max(tl.where(grand != parent, 1, 0), axis=0)
                tl.debug_barrier()
                tl.store(buf + offs, grand, mask=fg)
                tl.debug_barrier()
                parent = grand
            proposal = _neighbour_min(buf, parent, fg, y, x, h, w, BLOCK, CONN8)
            hooking = tl.max(tl.where(fg & (proposal < parent), 1, 0), axis=0)
        return parent

    @triton.jit
    def _label_kernel(mask_ptr, out_ptr, scratch_ptr, h, w, BLOCK: tl.constexpr, CONN8: tl.constexpr):
        n = h * w
        map_id = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK)
        inside = offs < n
        fg = tl.load(mask_ptr + map_id * n + offs, mask=inside, other=0) != 0
        buf = scratch_ptr + map_id * BLOCK
        parent = hook_to_stars(buf, fg, offs, h, w, BLOCK, CONN8)
        # Every component is now one star rooted at its first pixel: number the roots in raster order.
        is_root = fg & (parent == offs)
        rank = tl.cumsum(is_root.to(tl.int32), axis=0)
        tl.debug_barrier()
        tl.store(buf + offs, rank)
        tl.debug_barrier()
        labels = tl.load(buf + parent, mask=fg, other=0)
        tl.store(out_ptr + map_id * n + offs, labels.to(tl.int64), mask=inside)


def _launch(maps: torch.Tensor, connectivity: int) -> torch.Tensor:
    """``[N, h, w]`` bool -> ``[N, h, w]`` int64; ``h * w <= MAX_TRITON_PIXELS``."""
    n_maps, h, w = maps.shape
    block = triton.next_power_of_2(h * w + 1)
    scratch = torch.empty(n_maps, block, dtype=torch.int32, device=maps.device)
    out = torch.empty(n_maps, h, w, dtype=torch.int64, device=maps.device)
    source = maps.contiguous().view(torch.uint8)
    kernel = _wrap_triton(_label_kernel) if _wrap_triton is not None else _label_kernel
    kernel[(n_maps,)](
        source, out, scratch, h, w, BLOCK=block, CONN8=connectivity == 8, num_warps=max(1, min(8, block // 128))
    )
    return out


_wrap_triton = getattr(torch.library, "wrap_triton", None)
_triton_op = getattr(torch.library, "triton_op", None)
if triton is not None and _triton_op is not None and _wrap_triton is not None:
    _launch_op = _triton_op("sarvit::connected_components_triton", _launch, mutates_args=())
else:
    _launch_op = _launch


def label_with_triton(maps: torch.Tensor, connectivity: int) -> torch.Tensor:
    """``[N, h, w]`` bool on CUDA -> ``[N, h, w]`` int64; ``h * w <= MAX_TRITON_PIXELS``."""
    return _launch_op(maps, connectivity)
