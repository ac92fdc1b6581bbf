"""Print the cost of SAR: the spatial-entropy loss alone, and (on CUDA) the ViT-S/16 train step.

    python benchmarks/bench_loss.py            # CUDA if available, else CPU
    python benchmarks/bench_loss.py --device cpu --repeats 50

Figures printed (median of --repeats timed runs after warm-up):
  * loss forward+backward for (B=256, H=6, 14x14), (B=128, H=12, 14x14), (B=64, H=6, 28x28);
  * CPU only: 1,536 random 14x14 maps forward+backward against a Python loop calling
    scipy.ndimage.label per map (labels only), and the reference-style loss (a loop over maps);
  * CUDA only: ViT-S/16 train step (bf16 autocast, fused attention, batch 256, AdamW) with and
    without SAR, and the overhead in %.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

import sarvit

LOSS_SHAPES = [(256, 6, 14, 14), (128, 12, 14, 14), (64, 6, 28, 28)]


def timed(fn, repeats: int, device: torch.device, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def loss_step(S: torch.Tensor, loss_fn: torch.nn.Module):
    def run():
        S.grad = None
        loss_fn(S).backward()
    return run


def reference_style_loss(S: torch.Tensor) -> torch.Tensor:
    """The public reference's structure: label each map on the CPU in a Python loop, pool with masks."""
    B, H, h, w = S.shape
    m = S.mean(dim=(2, 3), keepdim=True)
    mass = torch.relu(S - m) + 1e-9
    total = 0.0
    above = (S > m).detach().cpu().numpy()
    for b in range(B):
        for head in range(H):
            labels, n = ndimage.label(above[b, head], structure=np.ones((3, 3)))
            masks = torch.from_numpy(labels[None] == np.arange(1, n + 1)[:, None, None]).to(S.device)
            p = (mass[b, head] * masks).sum(dim=(1, 2)) / mass[b, head].sum()
            total = total - (p * p.log()).sum()
    return total / (B * H)


def bench_losses(device: torch.device, repeats: int) -> None:
    loss_fn = sarvit.SpatialEntropyLoss()
    print("spatial-entropy loss, forward+backward (median ms):")
    for shape in LOSS_SHAPES:
        S = torch.randn(shape, device=device, requires_grad=True)
        ms = timed(loss_step(S, loss_fn), repeats, device)
        print(f"  B={shape[0]:<4} H={shape[1]:<3} {shape[2]}x{shape[3]:<3} {ms:9.3f} ms")


def bench_labelling(device: torch.device, repeats: int) -> None:
    methods = ["scipy", "tensor"] if device.type == "cpu" else ["tensor", "triton"]
    print("connected_components alone, 1,536 random 14x14 maps (median ms):")
    masks = torch.rand(1536, 14, 14, device=device) < 0.5
    for method in methods:
        try:
            ms = timed(lambda: sarvit.connected_components(masks, method=method), repeats, device)
        except ValueError as error:
            print(f"  {method:<7} unavailable: {error}")
            continue
        print(f"  {method:<7} {ms:9.3f} ms")


def bench_cpu_against_scipy_loop(repeats: int) -> None:
    S = torch.randn(256, 6, 14, 14, requires_grad=True)
    ours = timed(loss_step(S, sarvit.SpatialEntropyLoss()), repeats, torch.device("cpu"))
    masks = (S > S.mean(dim=(2, 3), keepdim=True)).detach().numpy().reshape(-1, 14, 14)
    structure = np.ones((3, 3))
    scipy_loop = timed(lambda: [ndimage.label(m, structure=structure) for m in masks], repeats, torch.device("cpu"))
    reference = timed(lambda: reference_style_loss(S).backward(), max(3, repeats // 5), torch.device("cpu"), warmup=1)
    print("1,536 random 14x14 maps on the CPU (median ms):")
    print(f"  sarvit loss forward+backward              {ours:9.3f} ms")
    print(f"  Python loop of scipy.ndimage.label (only) {scipy_loop:9.3f} ms   ratio {ours / scipy_loop:.2f}")
    print(f"  reference-style loss forward+backward     {reference:9.3f} ms   speed-up x{reference / ours:.1f}")


def bench_vit_step(device: torch.device, repeats: int, batch: int) -> None:
    images = torch.randn(batch, 3, 224, 224, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    loss_fn = sarvit.SpatialEntropyLoss()
    results = {}
    for use_sar in (False, True):
        torch.manual_seed(0)
        model = sarvit.create_model("vit_small_patch16_224", sar=use_sar).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                if use_sar:
                    logits, S = model(images, return_maps=True)
                    loss = torch.nn.functional.cross_entropy(logits, targets) + 0.01 * loss_fn(S)
                else:
                    loss = torch.nn.functional.cross_entropy(model(images), targets)
            loss.backward()
            optimizer.step()

        results[use_sar] = timed(step, repeats, device, warmup=5)
        del model, optimizer
    overhead = 100 * (results[True] / results[False] - 1)
    print(f"ViT-S/16 train step, bf16, batch {batch} (median ms):")
    print(f"  without SAR {results[False]:8.2f} ms\n  with SAR    {results[True]:8.2f} ms\n  overhead    {overhead:+8.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=256, help="ViT-S/16 step batch size (CUDA only)")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"sarvit {sarvit.__version__}, torch {torch.__version__}, device {device} ({name}), "
          f"{torch.get_num_threads()} CPU threads")
    if device.type == "cuda":
        from sarvit.ops.connected_components import _auto_method

        print(f"connected components on this device: {_auto_method(device, 196)} path")
    bench_losses(device, args.repeats)
    bench_labelling(device, args.repeats)
    if device.type == "cpu":
        bench_cpu_against_scipy_loop(args.repeats)
    if device.type == "cuda":
        bench_vit_step(device, args.repeats, args.batch)


if __name__ == "__main__":
    main()
