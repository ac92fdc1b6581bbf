"""The whole spatial-entropy of a batch of maps in one Triton launch, and its gradient in one more.

Forward, one program per map: the mean, the mask ``a = S - mean > 0``, its connected components (the
hooking of :func:`sarvit.ops.triton_components.hook_to_stars`; each component is a star on its first
pixel), the per-component mass ``M_j = sum_{C_j} (ReLU(a) + eps)`` (atomic adds onto the roots), the
total ``T``, ``p_j = M_j / T`` and ``H = -sum_j p_j log p_j``. It also writes, per pixel, what the
backward needs: ``g_i = dH/dmass_i`` on the mask and 0 elsewhere, where (with ``P = sum_j p_j``)

    dH/dM_j = -(log p_j + 1) / T,   dH/dT = (P - H) / T,   so   g_i = (P - H - 1 - log p_{c(i)}) / T.

Backward, one program per map: ``da_i/dS_k = [i = k] - 1/n`` and ``dmass_i/da_i = [a_i > 0]`` give

    dH/dS_k = g_k - (1/n) sum_i g_i

(``g`` is already 0 off the mask), times the incoming gradient; 0 where the entropy was clamped to 0, as
in the reference path. A map whose mean is not finite (NaN or inf anywhere) gets a NaN entropy and NaN
gradients.

Both launches are custom ops (``torch.ops.sarvit.spatial_entropy_fused`` with its autograd formula, and
``torch.ops.sarvit.spatial_entropy_fused_backward``), each with a fake kernel: ``torch.compile`` keeps them in
its graph without a break, and as nothing syncs with the host, CUDA graphs capture them. (A custom op rather
than a ``triton_op``: the kernels are already one launch each, so Inductor has nothing to fuse, and Triton's
interpreter, which runs the same ops on CPU tensors under ``TRITON_INTERPRET=1`` for the tests, would run a
``triton_op``'s kernels on fake tensors too.)
"""
from __future__ import annotations

import os

import torch

from .triton_components import MAX_TRITON_PIXELS, triton, triton_available

__all__ = ["fused_spatial_entropy", "fused_available", "interpreting", "MAX_FUSED_PIXELS"]

MAX_FUSED_PIXELS = MAX_TRITON_PIXELS  # 64x64



def fused_available() -> bool:
    """Triton is installed (the op's kernels are Triton kernels)."""
    return triton_available()


def interpreting() -> bool:
    """Triton's CPU interpreter is on (``TRITON_INTERPRET=1``, read by Triton at import): kernels run on CPU."""
    return os.environ.get("TRITON_INTERPRET") == "1"


if fused_available():
    import triton.language as tl

    from .triton_components import hook_to_stars

    @triton.jit
    def _forward_kernel(maps_ptr, entropy_ptr, coeff_ptr, parent_ptr, mass_ptr, h, w, eps,
                        BLOCK: tl.constexpr, CONN8: tl.constexpr):
        n = h * w
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK)
        inside = offs < n
        values = tl.load(maps_ptr + row * n + offs, mask=inside, other=0.0)
        mean = tl.sum(values, axis=0) / n
        above = values - mean
        fg = inside & (above > 0)
        parent = hook_to_stars(parent_ptr + row * BLOCK, fg, offs, h, w, BLOCK, CONN8)
        mass = tl.where(inside, tl.where(fg, above, 0.0) + eps, 0.0)
        total = tl.sum(mass, axis=0)
        buf = mass_ptr + row * BLOCK
        tl.store(buf + offs, tl.zeros_like(mass))
        tl.debug_barrier()
        tl.atomic_add(buf + parent, mass, mask=fg)
        tl.debug_barrier()
        is_root = fg & (parent == offs)
        p = tl.where(is_root, tl.load(buf + offs) / total, 1.0)
        log_p = tl.log(p)
        entropy = -tl.sum(tl.where(is_root, p * log_p, 0.0), axis=0)
        covered = tl.sum(tl.where(is_root, p, 0.0), axis=0)
        tl.debug_barrier()
        tl.store(buf + offs, log_p)  # each root now holds its component's log p
        tl.debug_barrier()
        pixel_log_p = tl.load(buf + parent, mask=fg, other=0.0)
        coeff = tl.where(fg, (covered - entropy - 1.0 - pixel_log_p) / total, 0.0)
        not_finite = mean - mean  # 0 for a finite mean, NaN otherwise
        finite = not_finite == 0
        # rounding noise above a (near-)constant map's mean can give p a hair over 1: entropy 0, not -1e-7
        entropy = tl.where(finite, tl.where(entropy > 0, entropy, 0.0), not_finite)
        tl.store(entropy_ptr + row, entropy)
        tl.store(coeff_ptr + row * n + offs, tl.where(finite, coeff, not_finite), mask=inside)

    @triton.jit
    def _backward_kernel(grad_ptr, entropy_ptr, coeff_ptr, out_ptr, n, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        offs = tl.arange(0, BLOCK)
        inside = offs < n
        coeff = tl.load(coeff_ptr + row * n + offs, mask=inside, other=0.0)
        entropy = tl.load(entropy_ptr + row)
        grad = tl.load(grad_ptr + row)
        grad = tl.where((entropy > 0) | (entropy != entropy), grad, 0.0)  # clamped to 0: no gradient
        shared = tl.sum(coeff, axis=0) / n
        tl.store(out_ptr + row * n + offs, grad * (coeff - shared), mask=inside)

    def _warps(block: int) -> int:
        return max(1, min(8, block // 128))

    def _forward(maps: torch.Tensor, connectivity: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, h, w]`` float32/float64 -> (entropy ``[N]``, per-pixel ``dH/dmass`` ``[N, h, w]``)."""
        maps = maps.contiguous()
        n_maps, h, w = maps.shape
        entropy = maps.new_empty(n_maps)
        coeff = torch.empty_like(maps)
        if n_maps == 0:
            return entropy, coeff
        block = triton.next_power_of_2(h * w + 1)  # one slot past the last pixel: the background's root
        parents = torch.empty(n_maps, block, dtype=torch.int32, device=maps.device)
        scratch = maps.new_empty(n_maps, block)
        _forward_kernel[(n_maps,)](
            maps, entropy, coeff, parents, scratch, h, w, eps,
            BLOCK=block, CONN8=connectivity == 8, num_warps=_warps(block),
        )
        return entropy, coeff

    def _backward(grad: torch.Tensor, entropy: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
        """``grad [N]``, ``entropy [N]``, ``coeff [N, h, w]`` -> ``dLoss/dS [N, h, w]``."""
        grad = grad.contiguous()
        out = torch.empty_like(coeff)
        n_maps, h, w = coeff.shape
        if n_maps == 0:
            return out
        block = triton.next_power_of_2(h * w)
        _backward_kernel[(n_maps,)](grad, entropy, coeff, out, h * w, BLOCK=block,
                                                  num_warps=_warps(block))
        return out

    _forward_op = torch.library.custom_op("sarvit::spatial_entropy_fused", _forward, mutates_args=())
    _backward_op = torch.library.custom_op("sarvit::spatial_entropy_fused_backward", _backward, mutates_args=())

    @_forward_op.register_fake
    def _forward_fake(maps, connectivity, eps):
        return maps.new_empty(maps.shape[0]), maps.new_empty(maps.shape)

    @_backward_op.register_fake
    def _backward_fake(grad, entropy, coeff):
        return torch.empty_like(coeff)

    def _setup_context(ctx, inputs, output):
        entropy, coeff = output
        ctx.save_for_backward(entropy, coeff)
        ctx.mark_non_differentiable(coeff)

    def _autograd_backward(ctx, grad_entropy, _grad_coeff):
        entropy, coeff = ctx.saved_tensors
        return _backward_op(grad_entropy, entropy, coeff), None, None

    _forward_op.register_autograd(_autograd_backward, setup_context=_setup_context)


def fused_spatial_entropy(maps: torch.Tensor, connectivity: int = 8, eps: float = 1e-9) -> torch.Tensor:
    """Spatial entropy of ``maps [N, h, w]`` (float32 or float64, CUDA) -> ``[N]``, differentiable.

    ``h * w <= MAX_FUSED_PIXELS``; the numbers of :func:`sarvit.spatial_entropy`'s reference path.
    """
    return torch.ops.sarvit.spatial_entropy_fused(maps, connectivity, eps)[0]
