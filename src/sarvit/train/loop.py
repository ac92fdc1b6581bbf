"""One training epoch and one evaluation pass.

The step keeps everything on the device: metrics accumulate in device tensors and the host reads them
only every ``log_interval`` steps and at the end of the epoch. The step is one forward pass of a
:class:`~sarvit.train.regularizers.RegularizedModel`, which asks the model's capture only for what its
terms read (what DDP wraps and ``--compile`` compiles, as one graph)::

    logits, terms = model(x)                      # terms [n]: e.g. the spatial entropy of S, DRLoc's L1
    loss = CE(logits, y) + sum_i weight_i * terms[i]

Non-finite losses: every step records, on the device, whether its loss was finite. Without
``skip_nonfinite`` the host looks at that record at the next log point and stops the run
(:class:`NonFiniteLoss`); weights touched by the bad step are never checkpointed, so the last good
checkpoint survives. With ``skip_nonfinite`` each step's flag is read before the update (one host
sync per step, the price of skipping) and a bad step is skipped and counted; ``max_skipped`` skipped steps
in a row (across epochs) stop the run: by then the weights or the learning rate are broken, not one batch.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.utils import accuracy
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import SarvitError
from ..losses import spatial_entropy
from ..metrics import AttentionJaccard
from ..models import has_class_token
from .distributed import DistInfo, all_reduce_sum
from .regularizers import log_key

__all__ = ["StepSettings", "NonFiniteLoss", "train_one_epoch", "evaluate", "autocast_context",
           "nonfinite_weights"]


class NonFiniteLoss(SarvitError):
    """The training loss became NaN or infinite; ``epoch`` and ``step`` say where (0-based; the message counts from 1)."""

    def __init__(self, epoch: int, step: int, message: str = "") -> None:
        super().__init__(message or f"the training loss became non-finite (NaN or inf) at epoch {epoch + 1}, "
                                    f"step {step + 1}")
        self.epoch, self.step = epoch, step


@dataclass
class StepSettings:
    """What a training step needs besides the model and the data."""

    reg_names: tuple[str, ...] = ()  # the model's terms, in order (RegularizedModel.terms)
    reg_weights: tuple[float, ...] = ()
    clip_grad: Optional[float] = None
    skip_nonfinite: bool = False
    max_skipped: int = 25     # with skip_nonfinite: this many skipped steps in a row stop the run
    log_interval: int = 50
    amp_dtype: Optional[torch.dtype] = None  # None: no autocast


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def unwrap(model: nn.Module) -> nn.Module:
    """``model`` without its ``torch.compile`` and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DistributedDataParallel) else model


def loss_terms(model: nn.Module, criterion: Callable, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor):
    """``(loss, ce, terms, logits)`` of one batch; ``terms`` ``[n]`` unweighted (None without regularizers)."""
    logits, terms = model(x)
    ce = criterion(logits, y)
    if terms is None:
        return ce, ce, None, logits
    return ce + (weights * terms).sum(), ce, terms, logits


def correct_count(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Right top-1 guesses in a batch; with mixup/cutmix's soft targets ``[B, K]``, against their largest class."""
    labels = y.argmax(dim=-1) if y.ndim > 1 else y
    return (logits.detach().argmax(dim=-1) == labels).sum()


class _Tally:
    """Device-side running sums of one epoch: loss, CE, steps, right guesses, images, then one slot per
    regularizer term (the first HEAD slots, then the terms)."""

    HEAD = 5

    def __init__(self, device: torch.device, num_terms: int) -> None:
        self.sums = torch.zeros(self.HEAD + num_terms, device=device, dtype=torch.float64)
        self.bad = torch.zeros((), device=device, dtype=torch.int64)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self.skipped = 0

    def add(self, loss, ce, terms, correct: torch.Tensor, images: int, finite: torch.Tensor, step: int,
            count_bad: bool = True) -> None:
        one = torch.ones_like(finite, dtype=torch.float32)
        head = torch.stack([loss.detach().float(), ce.detach().float(), one, correct.float(), one * images])
        values = head if terms is None else torch.cat([head, terms.detach().float()])
        self.sums += torch.where(finite, values, torch.zeros_like(values)).double()
        if count_bad:
            self.bad += (~finite).long()
            self.first_bad = torch.where((self.first_bad < 0) & ~finite, torch.full_like(self.first_bad, step),
                                         self.first_bad)

    def check(self, info: DistInfo, epoch: int) -> torch.Tensor:
        """Host sync point: the sums over all processes; raises :class:`NonFiniteLoss` if a step went bad."""
        sums = all_reduce_sum(self.sums.clone(), info)
        bad = all_reduce_sum(self.bad.clone(), info)
        if int(bad) > 0:
            never = torch.full_like(self.first_bad, 1 << 40)
            first = torch.where(self.first_bad < 0, never, self.first_bad)
            if info.distributed:
                dist.all_reduce(first, op=dist.ReduceOp.MIN)
            raise NonFiniteLoss(epoch, int(first))
        return sums


def batches(loader):
    """Iterate ``loader``; a SarvitError from a worker process (say, an unreadable image) keeps its one-line
    message instead of carrying the worker's traceback text."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except SarvitError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            message = lines[-1] if lines else str(error)
            prefix = f"{SarvitError.__module__}.{SarvitError.__name__}: "
            raise SarvitError(message[len(prefix):] if message.startswith(prefix) else message) from None
        yield batch


def _step_is_finite(finite: torch.Tensor, info: DistInfo) -> bool:
    """One host sync: did every process get a finite loss this step?"""
    flag = (~finite).to(torch.float32).reshape(1)
    return float(all_reduce_sum(flag, info)) == 0.0


def train_one_epoch(
    model: nn.Module,
    criterion: Callable,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    settings: StepSettings,
    info: DistInfo,
    *,
    epoch: int,
    global_step: int,
    mixup: Optional[Callable] = None,
    scaler=None,
    ema=None,
    progress=None,
    skipped_in_a_row: int = 0,
):
    """Train ``model`` (a :class:`~sarvit.train.regularizers.RegularizedModel`, or DDP / ``torch.compile``
    around one) for one pass over ``loader``; returns ``(metrics, global_step)``.

    ``metrics``: mean ``loss``, ``ce``, one ``reg_<name>`` per term (:func:`~sarvit.train.regularizers.log_key`),
    ``entropy`` (the spatial-entropy term; None without it), ``lr`` at the end, ``img_per_s`` (all processes),
    ``skipped_steps``, ``skipped_in_a_row`` (the run of skipped steps the epoch ends with, counting
    ``skipped_in_a_row`` from the epoch before). The means are None when every step was skipped.
    ``ema`` averages the inner model only.
    """
    model.train()
    device = info.device
    keys = [log_key(name) for name in settings.reg_names]
    tally = _Tally(device, len(keys))
    weights = torch.tensor(settings.reg_weights, device=device, dtype=torch.float32)
    averaged = unwrap(model).model  # EMA averages the model alone, not the regularizers' heads
    params = [p for p in model.parameters() if p.requires_grad]
    images, start = 0, time.perf_counter()
    steps = len(loader)
    for step, (x, y) in enumerate(batches(loader)):
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if mixup is not None:
            x, y = mixup(x, y)
        with autocast_context(device, settings.amp_dtype):
            loss, ce, terms, logits = loss_terms(model, criterion, x, y, weights)
        finite = torch.isfinite(loss.detach())
        optimizer.zero_grad(set_to_none=True)
        if settings.skip_nonfinite and not _step_is_finite(finite, info):
            tally.skipped += 1
            skipped_in_a_row += 1
            if skipped_in_a_row >= settings.max_skipped:
                raise NonFiniteLoss(epoch, step, f"{skipped_in_a_row} steps in a row had a non-finite loss and were "
                                                 f"skipped (up to epoch {epoch + 1}, step {step + 1}); stopping "
                                                 f"(--max-skipped-steps {settings.max_skipped})")
        else:
            skipped_in_a_row = 0
            _backward_and_step(loss, optimizer, params, settings.clip_grad, scaler)
            if ema is not None:
                ema.update(averaged, step=global_step + 1)
        global_step += 1
        scheduler.step_update(num_updates=global_step)
        tally.add(loss, ce, terms, correct_count(logits, y), x.shape[0], finite, step,
                  count_bad=not settings.skip_nonfinite)
        images += x.shape[0]
        if (step + 1) % settings.log_interval == 0 or step + 1 == steps:
            sums = tally.check(info, epoch).tolist()  # host syncs at log points only (non-finite count, sums)
            if progress is not None:
                means = [value / sums[2] for value in sums] if sums[2] else None
                shown = ({"loss": f"{means[0]:.4f}",
                          **{name: f"{value:.4f}" for name, value in zip(settings.reg_names, means[tally.HEAD:])}}
                         if means else {"loss": "n/a"})
                shown["lr"] = f"{optimizer.param_groups[0]['lr']:.2e}"
                if settings.skip_nonfinite:
                    shown["skipped"] = tally.skipped
                progress.set_postfix(**shown)
        if progress is not None:
            progress.update(1)
    elapsed = time.perf_counter() - start
    sums = tally.check(info, epoch).tolist()
    count = sums[2]
    terms_mean = {key: value / count if count else None for key, value in zip(keys, sums[tally.HEAD:])}
    metrics = {
        "loss": sums[0] / count if count else None,
        "ce": sums[1] / count if count else None,
        "top1": 100.0 * sums[3] / sums[4] if sums[4] else None,  # on the augmented batches, in train mode
        "entropy": terms_mean.get(log_key("spatial-entropy")),
        **terms_mean,
        "lr": float(optimizer.param_groups[0]["lr"]),
        "img_per_s": images * info.world_size / max(elapsed, 1e-9),
        "skipped_steps": tally.skipped,  # every process skips the same steps (the decision is all-reduced)
        "skipped_in_a_row": skipped_in_a_row,
    }
    return metrics, global_step


def nonfinite_weights(models: dict[str, nn.Module]) -> list[str]:
    """The names of ``models`` whose floating-point weights hold NaN or inf: one host sync for all of them,
    once an epoch (a step whose loss is still finite can break the weights; the per-step checks cannot see it)."""
    flags = torch.stack([torch.stack([tensor.isfinite().all() for tensor in model.state_dict().values()
                                      if tensor.is_floating_point()]).all() for model in models.values()])
    return [name for name, finite in zip(models, flags.tolist()) if not finite]


def _backward_and_step(loss, optimizer, params, clip_grad: Optional[float], scaler) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip_grad:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        scaler.step(optimizer)
        scaler.update()
        return
    loss.backward()
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    optimizer.step()


@torch.no_grad()
def evaluate(model: nn.Module, loader, info: DistInfo, amp_dtype: Optional[torch.dtype] = None,
             jaccard: Optional[AttentionJaccard] = None) -> dict:
    """Top-1/top-5 accuracy (%), mean cross-entropy and mean spatial entropy of the [CLS] maps (None for a
    model without a [CLS] token, such as ARViT).

    With ``jaccard`` (an :class:`~sarvit.metrics.AttentionJaccard`, for a loader of a dataset with masks,
    items ``(image, target, foreground, valid)``) the mean best-head Jaccard (%) of the thresholded [CLS]
    attention with the masks is added (``jaccard``), from the same forward pass. Each process evaluates its
    shard; the sums are added over the processes, so the figures are those of the whole set exactly once.
    """
    model.eval()
    device = info.device
    sums = torch.zeros(5, device=device, dtype=torch.float64)  # loss, top1, top5, entropy, count
    has_cls = has_class_token(model)
    if jaccard is not None and not has_cls:
        raise SarvitError("the attention Jaccard scores the [CLS] attention; this model has no [CLS] token")
    if jaccard is not None:
        jaccard.reset()
        jaccard.to(device)
    for images, targets, *masks in batches(loader):
        x, y = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            if has_cls:
                logits, maps, *attention = model(x, return_maps=True, return_attention=jaccard is not None)
            else:  # no [CLS] query (ARViT): no maps to score
                logits, maps = model(x), None
        logits = logits.float()
        top1, top5 = accuracy(logits, y, topk=(1, min(5, logits.shape[1])))
        size = y.shape[0]
        if jaccard is not None:
            foreground, valid = (mask.to(device, non_blocking=True) for mask in masks)
            jaccard.update(attention[0].float(), foreground, valid)
        sums += torch.stack([
            F.cross_entropy(logits, y, reduction="sum").double(),
            (top1 * size / 100.0).double().round(),
            (top5 * size / 100.0).double().round(),
            spatial_entropy(maps, check_finite=False).mean(dim=1).sum().double() if has_cls else sums.new_zeros(()),
            torch.tensor(float(size), device=device, dtype=torch.float64),
        ])
    loss, top1, top5, entropy, count = all_reduce_sum(sums, info).tolist()
    if count == 0:
        raise SarvitError("evaluation: the validation set is empty")
    metrics = {"loss": loss / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count,
               "entropy": entropy / count if has_cls else None, "images": int(count)}
    if jaccard is not None:
        metrics["jaccard"] = 100.0 * jaccard.compute()["jaccard"]
    return metrics
