"""The cost of SAR per model family: one training step (forward, CE [+ lambda * spatial entropy], backward, AdamW)
of each family's small model (last stage: width 64, 2 blocks), plain (``sar=False``, no maps) against SAR (the surgery, S from the capture, the loss).

Steps of the two arms are interleaved (one step of each per round, in a fresh random order) so that a busy machine
slows both alike; the table gives the median step time of each arm and the difference.

    python benchmarks/bench_families.py                 # every family, batch 32, CPU
    python benchmarks/bench_families.py --device cuda --batch 128
    python benchmarks/bench_families.py --families PVT-v2 Swin --steps 5
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import torch
import torch.nn.functional as F

import sarvit

SMALL = dict(embed_dim=64, depth=2, num_heads=2)
VIT = dict(img_size=32, patch_size=4, **SMALL)
FAMILIES = {  # family: (timm name, query, input side, timm kwargs); last stage: width 64, 2 blocks
    "ViT": ("vit_tiny_patch16_224", "cls", 32, VIT),
    "ViT-gap": ("vit_base_patch16_gap_224", "mean", 32, VIT),
    "DeiT-III": ("deit3_small_patch16_224", "cls", 32, VIT),
    "Eva-RoPE": ("vit_small_patch16_rope_224", "cls", 32, VIT),
    "Eva-RoPE-gap": ("vit_medium_patch16_rope_reg1_gap_256", "pooled", 32, VIT),
    "T2T-ViT-14": ("t2t_vit_14", "cls", 64, dict(img_size=64, **SMALL)),
    "PVT-Small": ("pvt_small", "cls", 96, dict(img_size=96, **SMALL)),
    "PVT-v2": ("pvt_v2_b0", "mean", 96, dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 2),
                                             num_heads=(1, 1, 2, 2))),
    "CvT-13": ("cvt_13", "cls", 96, dict(img_size=96, **SMALL)),
    "Swin": ("swin_tiny_patch4_window7_224", "mean", 64, dict(img_size=64, patch_size=4, embed_dim=16,
                                                              depths=(1, 1, 2), num_heads=(1, 2, 2), window_size=4)),
}


def arm(name, query, kwargs, sar, device):
    torch.manual_seed(0)
    model = sarvit.create_model(name, sar=sar, query=query, num_classes=10, **kwargs).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = sarvit.SpatialEntropyLoss()

    def step(x, y):
        if sar:
            logits, S = model(x, return_maps=True)
            loss = F.cross_entropy(logits, y) + 0.01 * loss_fn(S)
        else:
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def time_family(family, args):
    name, query, size, kwargs = FAMILIES[family]
    x = torch.randn(args.batch, 3, size, size, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    arms = {"plain": arm(name, query, kwargs, False, args.device), "SAR": arm(name, query, kwargs, True, args.device)}
    times = {key: [] for key in arms}
    for round_ in range(args.warmup + args.steps):
        for key in random.sample(list(arms), len(arms)):
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            arms[key](x, y)
            if args.device == "cuda":
                torch.cuda.synchronize()
            if round_ >= args.warmup:
                times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) * 1e3 for key, values in times.items()}


def load() -> str:
    """The machine's load, which a shared CPU's figures depend on."""
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    return f"load average {' / '.join(f'{value:.1f}' for value in os.getloadavg())} (1 / 5 / 15 min), {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5)  # fewer left the first families in the process warm-up (+130 % on ViT)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    print(f"batch {args.batch} on {args.device}, median of {args.steps} steps per arm, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"before: {load()}")
    print("| family | model (query) | input | plain step ms | SAR step ms | SAR - plain |")
    print("|---|---|---|---|---|---|")
    for family in args.families:
        name, query, size, _ = FAMILIES[family]
        ms = time_family(family, args)
        print(f"| {family} | `{name}` ({query}) | {size} px | {ms['plain']:.1f} | {ms['SAR']:.1f} | "
              f"{ms['SAR'] - ms['plain']:+.1f} ms ({ms['SAR'] / ms['plain'] - 1:+.0%}) |")
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
