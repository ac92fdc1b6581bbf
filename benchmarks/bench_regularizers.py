"""The cost of each `--reg` term over the plain train step: forward, loss, backward, AdamW step.

Every arm is the same model (its own copy, its own optimizer) wrapped in
``sarvit.train.regularizers.RegularizedModel`` with one term (or SAR's spatial entropy + DRLoc); the plain
arm has no term, so the model runs its plain forward. Steps are interleaved (one step of each arm per
round, arms in a fresh random order every round) so that a busy machine slows every arm alike; the table
gives the median step time of each arm and its difference from the plain arm's median. A second table times
each term's own forward + backward alone, on inputs captured once: the part of the difference that is the
term itself, and a figure that machine noise disturbs far less than the step's.

    python benchmarks/bench_regularizers.py                     # the quick default model, batch 64, CPU
    python benchmarks/bench_regularizers.py --device cuda --model vit_small_patch16_224 --input-size 224 \\
        --batch 256 --amp                                       # ViT-S/16, bf16, on a GPU
"""
from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
import torch.nn.functional as F

import sarvit
from sarvit.losses import REGULARIZERS
from sarvit.train.loop import loss_terms
from sarvit.train.tasks import SupervisedTask
from sarvit.train.regularizers import RegularizedModel, RegTerm, resolve_regularizers

ARMS = {
    "plain": [],
    "spatial-entropy": ["spatial-entropy"],
    "tv": ["tv"],
    "nonspatial-entropy": ["nonspatial-entropy"],
    "drloc": ["drloc"],
    "distance": ["distance"],
    "patch-similarity": ["patch-similarity"],
    "spatial-entropy + drloc": ["spatial-entropy", "drloc"],
}


def terms(names: list[str]) -> list[RegTerm]:
    config = {"reg": names, "lam": 0.01, "sar_loss": False}
    resolve_regularizers(config, set())
    return [RegTerm.from_dict(term) for term in config["regularizers"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="vit_tiny_patch16_224")
    parser.add_argument("--input-size", type=int, default=32, help="default: the quick run's synthetic images")
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=30, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {"img_size": args.input_size, "num_classes": 10}
    if args.model == "vit_tiny_patch16_224" and args.input_size == 32:  # the quick run's model
        kwargs.update(patch_size=args.patch_size, depth=args.depth, embed_dim=args.embed_dim,
                      num_heads=args.num_heads)
    base = sarvit.create_model(args.model, sar=False, **kwargs)
    arms = {}
    for label, names in ARMS.items():
        model = RegularizedModel(copy.deepcopy(base), terms(names)).to(device)
        weights = torch.tensor([term.weight for term in model.terms], device=device)
        arms[label] = (model, weights, torch.optim.AdamW(model.parameters(), lr=1e-4))
    x = torch.rand(args.batch, 3, args.input_size, args.input_size, device=device)
    y = torch.randint(10, (args.batch,), device=device)

    def step(label: str) -> float:
        model, weights, optimizer = arms[label]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = loss_terms(SupervisedTask(model, F.cross_entropy), (x, y), weights)[0]  # the step's own loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    term_times = time_terms_alone(arms, x, args.rounds, device)
    times = {label: [] for label in arms}
    order = list(arms)
    for round_index in range(args.warmup + args.rounds):
        random.Random(round_index).shuffle(order)
        for label in order:
            elapsed = step(label)
            if round_index >= args.warmup:
                times[label].append(elapsed)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"sarvit {sarvit.__version__}, torch {torch.__version__}, {device} ({name}); {args.model} "
          f"{args.input_size}px, batch {args.batch}{', bf16' if args.amp else ''}; median of {args.rounds} "
          "interleaved steps per arm")
    plain = statistics.median(times["plain"]) * 1e3
    print(f"{'arm':<26}{'step ms':>10}{'over plain':>13}")
    for label, values in times.items():
        ms = statistics.median(values) * 1e3
        over = "" if label == "plain" else f"{ms - plain:+8.2f} ms {100 * (ms - plain) / plain:+6.1f} %"
        print(f"{label:<26}{ms:>10.2f}  {over}")
    print("each term alone, forward + backward on its captured inputs (median ms):")
    for label, values in term_times.items():
        print(f"  {label:<24}{statistics.median(values) * 1e3:>10.2f}")


def time_terms_alone(arms: dict, x: torch.Tensor, rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Each single term's own forward + backward, on inputs captured once (leaf tensors), interleaved."""
    calls = {}
    for label, (model, _, _) in arms.items():
        if len(model.terms) != 1:
            continue
        name = model.terms[0].name
        with torch.no_grad():
            _, captured = model.model(x, capture=model.capture)
        inputs = {"maps": captured.get("maps"), "tokens": captured.get("tokens"), "images": x,
                  "attention": next(iter(captured.get("attention", {}).values()), None)}
        needed = [inputs[need].clone().requires_grad_(need != "images") for need in REGULARIZERS[name].needs]
        calls[label] = (model.regularizers[name], needed)
    times = {label: [] for label in calls}
    for round_index in range(rounds + 1):
        for label, (module, needed) in calls.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            module(*needed).backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if round_index:  # the first round warms up
                times[label].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
