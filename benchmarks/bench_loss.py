"""Print the cost of SAR: the spatial-entropy loss alone, and a ViT-S/16 train step against plain timm.

    python benchmarks/bench_loss.py                    # CUDA if available, else CPU (small shapes)
    python benchmarks/bench_loss.py --device cpu --no-compile

Figures printed (median of --repeats timed runs after warm-up):
  * loss forward+backward for (B=256, H=6, 14x14), (B=128, H=12, 14x14), (B=64, H=6, 28x28): today's
    reference path (labelling op: scipy on CPU, Triton on CUDA; then scatter pooling), the same with the
    pure-tensor labelling, compiled (CUDA), the fused op (sarvit.ops.triton_spatial_entropy; CUDA),
    compiled too, and a per-map loop of scipy.ndimage.label (the labelling of the reference code's loop);
  * connected_components alone on 1,536 random 14x14 maps, per method;
  * CPU only: the same 1,536 maps against a Python loop calling scipy.ndimage.label per map, and the
    reference-style loss (a loop over maps);
  * the ViT-S/16 train step (AdamW; bf16 autocast on CUDA) of plain `timm.create_model` (timm's fused
    attention) against sarvit's SAR model + loss, eager and `torch.compile`d. CUDA: batch 256, 224 px;
    CPU: batch 8, 96 px, so that the run (compilation included) takes a few minutes.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import platform
import statistics
import time
from unittest import mock

import numpy as np
import timm
import torch
from scipy import ndimage
from torch import nn

import sarvit
from sarvit.ops.triton_spatial_entropy import fused_available

LOSS_SHAPES = [(256, 6, 14, 14), (128, 12, 14, 14), (64, 6, 28, 28)]
VIT = "vit_small_patch16_224"
# the loss's module (the package's `spatial_entropy` attribute is the function of the same name)
spatial_entropy_module = importlib.import_module("sarvit.losses.spatial_entropy")


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


def loss_step(S: torch.Tensor, loss_fn: nn.Module):
    def run():
        S.grad = None
        loss_fn(S).backward()
    return run


@contextlib.contextmanager
def tensor_labelling():
    """Make the loss label with the pure-tensor algorithm (the path of devices without a custom kernel)."""
    def by_hooking(mask, connectivity=8):
        return sarvit.connected_components(mask, connectivity, method="tensor")

    with mock.patch.object(spatial_entropy_module, "connected_components", by_hooking):
        yield


class EntropyLoss(nn.Module):
    """The SAR loss (mean spatial entropy) through one ``method`` of :func:`sarvit.spatial_entropy`."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        return sarvit.spatial_entropy(S, check_finite=False, method=self.method).mean()


def fused_runs_here(device: torch.device) -> bool:
    return device.type == "cuda" and fused_available()


def scipy_loop(S: torch.Tensor):
    """The labelling alone of a per-map loss loop: ``scipy.ndimage.label`` map by map, after the copy to the host
    (a lower bound for any loss that loops over maps; the reference code's whole loss is ~100x slower)."""
    structure = np.ones((3, 3))

    def run():
        above = (S > S.mean(dim=(2, 3), keepdim=True)).detach().cpu().numpy().reshape(-1, *S.shape[-2:])
        return [ndimage.label(mask, structure=structure) for mask in above]
    return run


def bench_losses(device: torch.device, repeats: int) -> dict[tuple, float]:
    """Loss forward+backward per shape: today's path (reference), the fused op, and a per-map scipy loop."""
    reference = EntropyLoss("reference")
    fused = EntropyLoss("fused") if fused_runs_here(device) else None
    # Eager, the reference is ~180 small ops whose host dispatch can outlast their GPU work; compiled, they
    # fuse. (On a CPU compiling costs more than it saves here: the compiled columns are CUDA-only.)
    compiled = torch.compile(reference, fullgraph=True) if device.type == "cuda" else None
    fused_compiled = torch.compile(fused, fullgraph=True) if fused is not None else None
    figures = {}
    print("spatial-entropy loss, forward+backward (median ms):")
    print("  shape                reference  tensor-labelled  ref. compiled      fused  fused compiled  scipy loop"
          " (labels only)")
    for shape in LOSS_SHAPES:
        S = torch.randn(shape, device=device, requires_grad=True)
        default = timed(loss_step(S, reference), repeats, device)
        with tensor_labelling():  # slow on the CPU: fewer runs
            tensor = timed(loss_step(S, reference), repeats if device.type == "cuda" else 3, device, warmup=1)
        columns = [default, tensor]
        for module in (compiled, fused, fused_compiled):
            columns.append(timed(loss_step(S, module), repeats, device) if module is not None else None)
        columns.append(timed(scipy_loop(S), 3, device, warmup=0))
        figures[shape] = default if fused is None else columns[3]
        cells = "".join(f"{value:13.3f} ms" if value is not None else f"{'–':>16}" for value in columns)
        print(f"  B={shape[0]:<4} H={shape[1]:<3} {shape[2]}x{shape[3]:<3}{cells}")
    if fused is None:
        print("  (fused: CUDA only; Triton's CPU interpreter runs it for the tests, at no meaningful speed)")
    return figures


def bench_labelling(device: torch.device, repeats: int) -> None:
    methods = ["scipy", "tensor"] if device.type == "cpu" else ["auto", "tensor", "triton"]
    print("connected_components alone, 1,536 random 14x14 maps (median ms):")
    masks = torch.rand(1536, 14, 14, device=device) < 0.5
    for method in methods:
        try:
            ms = timed(lambda: sarvit.connected_components(masks, method=method), repeats, device)
        except sarvit.SarvitError as error:
            print(f"  {method:<7} unavailable: {error}")
            continue
        print(f"  {method:<7} {ms:9.3f} ms")


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


class TrainLoss(nn.Module):
    """Cross-entropy, plus lambda * spatial entropy of the last block's maps when the model is sarvit's."""

    def __init__(self, model: nn.Module, sar: bool, lam: float = 0.01) -> None:
        super().__init__()
        self.model, self.sar, self.lam = model, sar, lam
        self.entropy = sarvit.SpatialEntropyLoss()

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not self.sar:
            return nn.functional.cross_entropy(self.model(images), targets)
        logits, S = self.model(images, return_maps=True)
        return nn.functional.cross_entropy(logits, targets) + self.lam * self.entropy(S)


def vit_step_ms(kind: str, mode: str | None, device: torch.device, batch: int, img_size: int,
                repeats: int) -> float:
    """Median ms of one AdamW step: ``kind`` is "timm" (plain timm ViT-S/16) or "sar" (sarvit's SAR model);
    ``mode`` None (eager) or a ``torch.compile`` mode ("default", "reduce-overhead": CUDA graphs)."""
    torch.manual_seed(0)
    if kind == "timm":
        model = timm.create_model(VIT, img_size=img_size)
    else:
        model = sarvit.create_model(VIT, sar=True, img_size=img_size)
    train_loss = TrainLoss(model.to(device).train(), sar=kind == "sar")
    forward = torch.compile(train_loss, mode=mode) if mode else train_loss
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        if mode == "reduce-overhead":  # a new CUDA-graph step: the last step's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = forward(images, targets)
        loss.backward()
        optimizer.step()

    ms = timed(step, repeats, device, warmup=3)
    del model, optimizer, forward, train_loss
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return ms


def bench_vit_step(device: torch.device, repeats: int, batch: int, img_size: int, compile_too: bool,
                   modes: tuple = ("default", "reduce-overhead")) -> None:
    precision = "bf16 autocast" if device.type == "cuda" else "float32"
    print(f"ViT-S/16 train step, {precision}, batch {batch}, {img_size} px, AdamW (median ms):")
    for mode in [None, *(modes if compile_too else ())]:
        plain = vit_step_ms("timm", mode, device, batch, img_size, repeats)
        sar = vit_step_ms("sar", mode, device, batch, img_size, repeats)
        print(f"  {mode or 'eager':<16} plain timm {plain:9.2f} ms   SAR model + loss {sar:9.2f} ms   "
              f"SAR costs {100 * (sar / plain - 1):+6.2f} %")


def describe(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return (f"sarvit {sarvit.__version__}, torch {torch.__version__}, timm {timm.__version__}, device {device} "
            f"({name}), {torch.get_num_threads()} CPU threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None, help="ViT step batch (default: 256 on CUDA, 8 on CPU)")
    parser.add_argument("--img-size", type=int, default=None, help="ViT step input size (224 on CUDA, 96 on CPU)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled steps")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cuda = device.type == "cuda"
    print(describe(device))
    bench_losses(device, args.repeats)
    bench_labelling(device, args.repeats)
    if not on_cuda:
        bench_cpu_against_scipy_loop(args.repeats)
    batch = args.batch or (256 if on_cuda else 8)
    img_size = args.img_size or (224 if on_cuda else 96)
    modes = ("default", "reduce-overhead") if on_cuda else ("default",)  # CUDA graphs need CUDA
    bench_vit_step(device, args.repeats if on_cuda else max(3, args.repeats // 4), batch, img_size, args.compile,
                   modes)


if __name__ == "__main__":
    main()
