"""Every GPU figure of the README from one run (called by benchmarks/gpu_check.sh after `pytest -m cuda`).

    python benchmarks/gpu_check.py [--repeats 20] [--skip-vit]

Prints, on a CUDA machine:
  1. exactness: the Triton kernel (method="triton") and the default path against scipy.ndimage.label, map
     by map, on large batches of random maps (14x14 .. 64x64, densities 0.1 .. 0.9) and adversarial ones
     (spirals, snakes, checkerboards, diagonal stripes, combs; rotated and mirrored; up to 64x64), both
     connectivities: maps checked and mismatches;
  1b. the fused spatial-entropy op against the reference path (entropies and gradients) on random maps
     and on maps whose masks are the families of 1;
  2. sync-free: labelling, loss forward+backward (fused and reference) and the compiled losses under
     torch.cuda.set_sync_debug_mode("error"): yes/no;
  3. loss forward+backward times for B=256,H=6,14x14 / B=128,H=12,14x14 / B=64,H=6,28x28;
  3b. the fused op's times beside them (bench_loss.bench_losses prints every column);
  4. the ViT-S/16 bf16 batch-256 train step, plain timm vs SAR model + loss, eager, compiled, reduce-overhead.
Exits 0 with a message when CUDA is absent; exits 1 when a check fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

import sarvit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_connected_components import snake, spiral  # noqa: E402  (the tests' adversarial map makers)

from bench_loss import bench_losses, bench_vit_step, describe  # noqa: E402

STRUCTURES = {8: np.ones((3, 3), dtype=bool), 4: ndimage.generate_binary_structure(2, 1)}


def adversarial_maps(size: int) -> list[np.ndarray]:
    """Long geodesics and connectivity traps of one size, in all eight orientations."""
    yy, xx = np.indices((size, size))
    comb = np.zeros((size, size), dtype=bool)
    comb[0] = True
    comb[:, ::2] = True
    shapes = [spiral(size), snake(size, size), (yy + xx) % 2 == 0, (yy + xx) % 3 == 0, (yy - xx) % 4 == 0, comb]
    maps = []
    for shape in shapes:
        for turned in (shape, shape.T):
            for k in range(4):
                maps.append(np.rot90(turned, k))
                maps.append(~np.rot90(turned, k))
    return maps


def map_batches(rng: np.random.Generator):
    """(name, [N, h, w] bool) batches: random ones of several sizes and densities, then adversarial ones."""
    for h, w, count in ((14, 14, 20000), (28, 28, 4000), (17, 9, 4000), (64, 64, 1000), (1, 64, 500), (64, 1, 500)):
        for density in (0.1, 0.3, 0.5, 0.7, 0.9):
            yield f"random {h}x{w} p={density}", rng.random((count // 5, h, w)) < density
    for size in (7, 14, 15, 28, 33, 64):
        yield f"adversarial {size}x{size}", np.stack(adversarial_maps(size))


def scipy_labels(maps: np.ndarray, connectivity: int) -> np.ndarray:
    return np.stack([ndimage.label(m, structure=STRUCTURES[connectivity])[0] for m in maps])


def check_exactness(device: torch.device) -> bool:
    checked, mismatches = 0, 0
    for name, maps in map_batches(np.random.default_rng(0)):
        on_device = torch.from_numpy(np.ascontiguousarray(maps)).to(device)
        for connectivity in (8, 4):
            expected = scipy_labels(maps, connectivity)
            for method in ("triton", "auto"):
                got = sarvit.connected_components(on_device, connectivity, method=method).cpu().numpy()
                wrong = int((got != expected).reshape(len(maps), -1).any(axis=1).sum())
                checked += len(maps)
                mismatches += wrong
                if wrong:
                    print(f"  MISMATCH {name}, connectivity {connectivity}, method {method}: {wrong} maps")
    print(f"exactness against scipy.ndimage.label: {checked} maps checked, {mismatches} mismatches")
    return mismatches == 0


def float_maps(maps: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Similarity maps whose above-the-mean mask is ``maps`` (positive values on it, 0 elsewhere)."""
    values = np.where(maps, 1.0 + rng.random(maps.shape), 0.0).astype(np.float32)
    return torch.from_numpy(values)[:, None]


NORMAL_MAPS = ((14, 14, 6000), (28, 28, 1000), (64, 64, 200), (9, 17, 1000))  # (h, w, count)


def check_fused(device: torch.device, normal=NORMAL_MAPS, batches=map_batches) -> bool:
    """The fused op against the reference path: entropies (1e-5 relative) and gradients, both connectivities,
    on random maps (normal values) and on maps whose masks are the adversarial and random families above."""
    rng = np.random.default_rng(1)
    checked, bad = 0, 0
    families = [(f"normal {h}x{w}", torch.randn(n, 1, h, w)) for h, w, n in normal]
    families += [(name, float_maps(maps, rng)) for name, maps in batches(rng) if maps.shape[-1] > 1]
    for name, maps in families:
        S = maps.to(device).requires_grad_()
        for connectivity in (8, 4):
            fused = sarvit.spatial_entropy(S, connectivity, method="fused")
            reference = sarvit.spatial_entropy(S, connectivity, method="reference")
            grad_fused, = torch.autograd.grad(fused.sum(), S)
            grad_reference, = torch.autograd.grad(reference.sum(), S)
            wrong = ~torch.isclose(fused, reference, rtol=1e-5, atol=1e-6).all(dim=1)
            scale = grad_reference.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
            wrong |= ((grad_fused - grad_reference).abs().amax(dim=(1, 2, 3)) > 1e-4 * scale + 1e-8)
            checked += len(S)
            bad += int(wrong.sum())
            if wrong.any():
                print(f"  FUSED MISMATCH {name}, connectivity {connectivity}: {int(wrong.sum())} maps")
    print(f"fused spatial entropy against the reference path: {checked} maps checked, {bad} mismatches")
    return bad == 0


def check_sync_free(device: torch.device) -> bool:
    S = torch.randn(256, 6, 14, 14, device=device, requires_grad=True)
    loss_fn = sarvit.SpatialEntropyLoss()
    compiled = torch.compile(loss_fn, fullgraph=True)

    reference = torch.compile(lambda maps: sarvit.spatial_entropy(maps, method="reference").mean(), fullgraph=True)

    def everything():
        sarvit.connected_components(S.detach() > 0)
        loss_fn(S).backward()  # the fused op (auto on CUDA)
        compiled(S).backward()
        sarvit.spatial_entropy(S, method="reference").mean().backward()
        reference(S).backward()

    everything()  # compiles and verifies the kernel once, which may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        everything()
        free = True
    except RuntimeError as error:
        print(f"  host synchronisation found: {error}")
        free = False
    finally:
        torch.cuda.set_sync_debug_mode("default")
    print(f"sync-free (labelling, fused and reference loss fwd+bwd, eager and compiled): {'yes' if free else 'no'}")
    return free


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-vit", action="store_true", help="leave out the ViT-S/16 train steps")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check (run it on a machine with a GPU)")
        return 0
    device = torch.device("cuda")
    print(describe(device))
    exact = check_exactness(device) & check_fused(device)
    sync_free = check_sync_free(device)
    bench_losses(device, args.repeats)
    if not args.skip_vit:
        bench_vit_step(device, args.repeats, batch=256, img_size=224, compile_too=True)
    return 0 if exact and sync_free else 1


if __name__ == "__main__":
    sys.exit(main())
