"""The quick recipe's learning-rate edge without any sarvit code: timm's ViT and torch's AdamW on an image folder.

A 4-block, 128-wide ViT (the quick recipe's size) trains at each ``--lrs`` value with a constant rate, batch 64, no
augmentation, no warm-up, and prints the mean training loss and the val top-1 after every epoch. On
``python -m sarvit.data.real_images ROOT digits-plain`` it shows that 2e-3 at batch 64 (the quick recipe's former
rate) stays at chance while 5e-4 learns: the stall is the optimiser's, not SAR's code.

    python benchmarks/plain_timm_lr.py ROOT/digits-plain --lrs 2e-3,5e-4 --epochs 15
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    classes = sorted(folder.name for folder in (root / "train").iterdir() if folder.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / split / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
            labels.append(label)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return (x - 0.5) / 0.25, torch.tensor(labels)


def train(lr: float, data, epochs: int, seed: int) -> None:
    (train_x, train_y), (val_x, val_y) = data
    torch.manual_seed(seed)
    side = train_x.shape[-1]
    model = timm.create_model("vit_tiny_patch16_224", img_size=side, patch_size=side // 8, depth=4, embed_dim=128,
                              num_heads=4, num_classes=int(train_y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order, total = torch.randperm(len(train_x)), 0.0
        for first in range(0, len(train_x), 64):
            batch = order[first:first + 64]
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            top1 = (model(val_x).argmax(1) == val_y).float().mean().item()
        print(f"lr {lr:g} epoch {epoch + 1}: train loss {total / len(train_x):.3f}, val top-1 {100 * top1:.1f} %, "
              f"{time.time() - start:.0f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="an image folder with train/ and val/")
    parser.add_argument("--lrs", default="2e-3,5e-4")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_split(args.root, "train"), load_split(args.root, "val")
    for lr in (float(value) for value in args.lrs.split(",")):
        train(lr, data, args.epochs, args.seed)


if __name__ == "__main__":
    main()
