"""Issue 18's stall, in one process: the quick recipe's model and schedule on a digits-on-clutter set.

Each arm (``both`` = SAR, ``both-gated`` = SAR with its loss gated by the task's progress, ``surgery``, ``loss``,
``neither``) trains the quick recipe's ViT (4 blocks, width 128, 32 px, 4-px patches) with its AdamW / cosine
schedule (default lr 2e-3 at batch 64, the quick recipe's rate until 2026-12-01, at which the stall shows;
``--lr 5e-4`` is today's; warm-up 2 of 45 epochs), on 1,000 digits pasted on clutter
(:mod:`sarvit.data.real_images`), with random-resized crops of the recipe's scales and flips done batched on
tensors (so that the CPU spends its time on the model). The task loss and the
:class:`~sarvit.train.diagnostics.TrainingProbe` figures are printed every epoch, then the val top-1.

    PYTHONPATH=src python benchmarks/sar_stall_probe.py --arms both,neither --seeds 0,1 --epochs 12
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torchvision.ops import roi_align

from sarvit.data.real_images import TRAIN_IMAGES, digits_canvases
from sarvit.models import create_model
from sarvit.train.diagnostics import TrainingProbe
from sarvit.train.loss_gate import DEFAULT_DROP, LossGate
from sarvit.train.regularizers import RegularizedModel

# arm -> (surgery, spatial-entropy weight, gated by the task's progress (sarvit.train.loss_gate))
ARMS = {"both": (True, 0.01, False), "both-gated": (True, 0.01, True), "surgery": (True, 0.0, False),
        "loss": (False, 0.01, False), "neither": (False, 0.0, False)}
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def random_resized_crops(images: torch.Tensor, size: int, scale: tuple[float, float], generator) -> torch.Tensor:
    """A batched RandomResizedCrop (area in ``scale``, ratio 3/4-4/3) and horizontal flip: [B, 3, S, S] -> [B, 3, size, size]."""
    batch, side = images.shape[0], images.shape[-1]
    area = torch.empty(batch).uniform_(*scale, generator=generator) * side * side
    ratio = torch.exp(torch.empty(batch).uniform_(torch.log(torch.tensor(3 / 4)).item(), torch.log(torch.tensor(4 / 3)).item(), generator=generator))
    w = (area * ratio).sqrt().clamp(max=side)
    h = (area / ratio).sqrt().clamp(max=side)
    x0 = torch.rand(batch, generator=generator) * (side - w)
    y0 = torch.rand(batch, generator=generator) * (side - h)
    boxes = torch.stack([torch.arange(batch, dtype=torch.float32), x0, y0, x0 + w, y0 + h], dim=1)
    crops = roi_align(images, boxes, output_size=size, sampling_ratio=2, aligned=True)
    flip = torch.rand(batch, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), crops.flip(-1), crops)


def centre(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def run_arm(arm: str, seed: int, data, args) -> dict:
    surgery, lam, gated = ARMS[arm]
    lam = args.lam if lam else 0.0
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = create_model("vit_tiny_patch16_224", sar=surgery, img_size=args.size, patch_size=args.size // 8, depth=4,
                         embed_dim=128, num_heads=4, num_classes=10)
    regularized = RegularizedModel(model, [{"name": "spatial-entropy", "weight": lam}] if lam else [])
    steps_per_epoch = TRAIN_IMAGES // 64
    optimizer = create_optimizer_v2(regularized, opt="adamw", lr=args.lr, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=args.schedule, min_lr=1e-5,
                                       warmup_lr=1e-6, warmup_epochs=args.warmup, step_on_epochs=False,
                                       updates_per_epoch=steps_per_epoch)
    params = [p for p in regularized.parameters() if p.requires_grad]
    probe = TrainingProbe(model, params, [t.name for t in regularized.terms], every=args.every)
    weights = torch.tensor([t.weight for t in regularized.terms])
    gate = LossGate([True], 10, DEFAULT_DROP, torch.device("cpu")) if gated else None
    train_x, train_y, val_x, val_y = data
    history, step = [], 0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        ce_sum = 0.0
        for index in range(steps_per_epoch):
            rows = order[index * 64:(index + 1) * 64]
            x = (random_resized_crops(train_x[rows], args.size, args.crop, generator) - MEAN) / STD
            y = train_y[rows]
            logits, terms = regularized(x)
            ce = F.cross_entropy(logits, y)
            step_weights = weights if gate is None else gate.weights(weights)
            loss = ce if terms is None else ce + (step_weights * terms).sum()
            measured = probe.due(index)
            if measured:
                probe.measure(x, ce, terms, step_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(params, args.clip)
            optimizer.step()
            if measured:
                probe.after_update()
            if gate is not None:
                gate.update(ce)
            step += 1
            scheduler.step_update(num_updates=step)
            ce_sum += float(ce.detach())
        line = {"arm": arm, "seed": seed, "epoch": epoch + 1, "ce": ce_sum / steps_per_epoch, **probe.read(),
                **({} if gate is None else gate.read())}
        history.append(line)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in line.items()}), flush=True)
    model.eval()
    with torch.no_grad():
        top1 = float((model(val_x).argmax(-1) == val_y).float().mean()) * 100
    result = {"arm": arm, "seed": seed, "val_top1": top1, "final_ce": history[-1]["ce"]}
    print("RESULT", json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arms", default="both,neither")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=12, help="epochs trained (of the --schedule)")
    parser.add_argument("--schedule", type=int, default=45, help="epochs of the cosine schedule")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--lam", type=float, default=0.01)
    parser.add_argument("--clip", type=float, default=0.0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--crop", type=float, nargs=2, default=(0.35, 1.0))
    parser.add_argument("--layout", default="clutter")
    parser.add_argument("--every", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = digits_canvases(args.layout)
    tensors = torch.tensor(images).permute(0, 3, 1, 2).float() / 255
    labels = torch.tensor(labels)
    val_x = (centre(tensors[TRAIN_IMAGES:], args.size) - MEAN) / STD
    data = (tensors[:TRAIN_IMAGES], labels[:TRAIN_IMAGES], val_x, labels[TRAIN_IMAGES:])
    start = time.time()
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in args.arms.split(","):
            run_arm(arm, seed, data, args)
    print(f"wall {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
