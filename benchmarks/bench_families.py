"""The cost of SAR per model family: one training step (forward, CE [+ lambda * spatial entropy], backward, AdamW)
of each family's tiny model, plain (``sar=False``, no maps) against SAR (the surgery, S from the capture, the loss).

Steps of the two arms are interleaved (one step of each per round, in a fresh random order) so that a busy machine
slows both alike; the table gives the median step time of each arm and the difference.

    python benchmarks/bench_families.py                 # every family, batch 32, CPU
    python benchmarks/bench_families.py --device cuda --batch 128
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F

import sarvit

SMALL = dict(embed_dim=64, depth=2, num_heads=2)
FAMILIES = {  # family: (timm name, query, timm kwargs)
    "ViT": ("vit_tiny_patch16_224", "cls", dict(img_size=32, patch_size=4, **SMALL)),
    "ViT-gap": ("vit_base_patch16_gap_224", "mean", dict(img_size=32, patch_size=4, **SMALL)),
    "DeiT-III": ("deit3_small_patch16_224", "cls", dict(img_size=32, patch_size=4, **SMALL)),
    "Eva-RoPE": ("vit_small_patch16_rope_224", "cls", dict(img_size=32, patch_size=4, **SMALL)),
    "Eva-RoPE-gap": ("vit_medium_patch16_rope_reg1_gap_256", "pooled", dict(img_size=32, patch_size=4, **SMALL)),
    "T2T-ViT-14": ("t2t_vit_14", "cls", dict(img_size=64, **SMALL)),
    "PVT-Small": ("pvt_small", "cls", dict(img_size=96, **SMALL)),
    "CvT-13": ("cvt_13", "cls", dict(img_size=96, **SMALL)),
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
    name, query, kwargs = FAMILIES[family]
    size = kwargs["img_size"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    print(f"batch {args.batch} on {args.device}, median of {args.steps} steps per arm, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| family | model (query) | input | plain step ms | SAR step ms | SAR - plain |")
    print("|---|---|---|---|---|---|")
    for family in args.families:
        name, query, kwargs = FAMILIES[family]
        ms = time_family(family, args)
        print(f"| {family} | `{name}` ({query}) | {kwargs['img_size']} px | {ms['plain']:.1f} | {ms['SAR']:.1f} | "
              f"{ms['SAR'] - ms['plain']:+.1f} ms ({ms['SAR'] / ms['plain'] - 1:+.0%}) |")


if __name__ == "__main__":
    main()
