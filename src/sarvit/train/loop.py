"""One training epoch, for any :class:`~sarvit.train.tasks.TrainingTask`.

The step keeps everything on the device: the epoch's means are torchmetrics ``MeanMetric`` / ``MulticlassAccuracy``
states updated on the device, and the host reads them (synced over the processes) only every ``log_interval``
steps and at the end of the epoch, in one read. A step is one forward pass of the task (what DDP wraps and
``--compile`` compiles), whose model is a :class:`~sarvit.train.regularizers.RegularizedModel` that asks the
model's capture only for what its terms read::

    out = task(batch)                             # out.terms [n]: e.g. the spatial entropy of S, DRLoc's L1
    loss = out.loss + sum_i weight_i * out.terms[i]

Non-finite losses: every step records, on the device, whether its loss was finite. Without
``skip_nonfinite`` the host looks at that record at the next log point and stops the run
(:class:`NonFiniteLoss`); weights touched by the bad step are never checkpointed, so the last good
checkpoint survives. With ``skip_nonfinite`` each step's flag is read before the update (one host
sync per step, the price of skipping) and a bad step is skipped and counted; ``max_skipped`` skipped steps
in a row (across epochs) stop the run: by then the weights or the learning rate are broken, not one batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist
from timm.utils import unwrap_model
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ..errors import SarvitError
from .distributed import DistInfo, all_reduce_sum
from .evaluation import autocast_context, batches, evaluate, hard_labels
from .regularizers import log_key
from .tasks import TaskOutput

__all__ = ["StepSettings", "LoopState", "Optimization", "NonFiniteLoss", "train_one_epoch", "evaluate",
           "autocast_context", "nonfinite_weights", "loss_terms"]


class NonFiniteLoss(SarvitError):
    """The training loss became NaN or infinite; ``epoch`` and ``step`` say where (0-based; the message counts from 1)."""

    def __init__(self, epoch: int, step: int, message: str = "") -> None:
        super().__init__(message or f"the training loss became non-finite (NaN or inf) at epoch {epoch + 1}, "
                                    f"step {step + 1}")
        self.epoch, self.step = epoch, step


@dataclass(frozen=True)
class StepSettings:
    """What a training step needs besides the task, the optimizer and the data."""

    reg_names: tuple[str, ...] = ()  # the model's terms, in order (RegularizedModel.terms)
    reg_weights: tuple[float, ...] = ()
    clip_grad: Optional[float] = None
    skip_nonfinite: bool = False
    max_skipped: int = 25     # with skip_nonfinite: this many skipped steps in a row stop the run
    log_interval: int = 50
    amp_dtype: Optional[torch.dtype] = None  # None: no autocast
    total_steps: int = 0      # of the whole run, for TrainingTask.after_step


@dataclass
class Optimization:
    """The parts that update the weights: timm's optimizer and scheduler (stepped per update), the fp16 gradient
    scaler and the EMA of the weights (``timm.utils.ModelEmaV3`` of the task's evaluation model), when used."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[torch.amp.GradScaler] = None
    ema: Optional[nn.Module] = None


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch (checkpointed): the epoch, the optimizer steps so far and the
    run of skipped steps the last epoch ended with."""

    epoch: int = 0
    global_step: int = 0
    skipped_in_a_row: int = 0


def loss_terms(step: nn.Module, batch: Any, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                                              Optional[torch.Tensor], TaskOutput]:
    """``(loss, task loss, terms, output)`` of one batch: the task's loss plus the weighted regularizer terms."""
    out = step(batch)
    if out.terms is None:
        return out.loss, out.loss, None, out
    return out.loss + (weights * out.terms).sum(), out.loss, out.terms, out


class _EpochMeans:
    """The epoch's device-side means (torchmetrics), created at the first step from what the task hands back."""

    def __init__(self, device: torch.device, term_keys: list[str]) -> None:
        self.device, self.term_keys = device, term_keys
        self.means: dict[str, MeanMetric] = {}
        self.top1: Optional[MulticlassAccuracy] = None
        self.bad = torch.zeros((), device=device, dtype=torch.int64)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        self.updates = 0

    def _mean(self, key: str) -> MeanMetric:
        if key not in self.means:  # nan_strategy "disable": no host-side NaN check per update
            self.means[key] = MeanMetric(nan_strategy="disable").to(self.device)
        return self.means[key]

    def add(self, loss: torch.Tensor, task_loss: torch.Tensor, terms: Optional[torch.Tensor], out: TaskOutput) -> None:
        self._mean("loss").update(loss.detach().float())
        self._mean("ce").update(task_loss.detach().float())
        if terms is not None:
            for key, value in zip(self.term_keys, terms.detach().float()):
                self._mean(key).update(value)
        for key, value in out.metrics.items():
            self._mean(key).update(value.detach().float())
        if out.logits is not None:
            if self.top1 is None:
                self.top1 = MulticlassAccuracy(out.logits.shape[-1], average="micro",
                                               validate_args=False).to(self.device)
            self.top1.update(out.logits.detach(), hard_labels(out.targets))
        self.updates += 1

    def watch(self, finite: torch.Tensor, step: int) -> None:
        self.bad += (~finite).long()
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, torch.full_like(self.first_bad, step),
                                     self.first_bad)

    def check(self, info: DistInfo, epoch: int) -> None:
        """Host sync point: raises :class:`NonFiniteLoss` if a step of any process went bad."""
        bad = all_reduce_sum(self.bad.clone(), info)
        if int(bad) > 0:
            never = torch.full_like(self.first_bad, 1 << 40)
            first = torch.where(self.first_bad < 0, never, self.first_bad)
            if info.distributed:
                dist.all_reduce(first, op=dist.ReduceOp.MIN)
            raise NonFiniteLoss(epoch, int(first))

    def read(self) -> dict[str, Optional[float]]:
        """The means so far over every process (``top1`` in %), in one host read; None before any update."""
        fixed = ("loss", "ce", *self.term_keys)
        keys = [*fixed, *(key for key in self.means if key not in fixed)]  # then the task's own metrics
        if not self.updates:  # every step skipped
            return dict.fromkeys([*keys, "top1"])
        parts = {key: self.means[key].compute() for key in keys}
        if self.top1 is not None:
            parts["top1"] = 100.0 * self.top1.compute()
        values = dict(zip(parts, torch.stack(list(parts.values())).tolist()))
        return {key: values.get(key) for key in (*keys, "top1")}


def train_one_epoch(step: nn.Module, loader, optimization: Optimization, state: LoopState, settings: StepSettings,
                    info: DistInfo, progress=None, probe=None, gate=None) -> dict:
    """Train for one pass over ``loader``; ``state`` is advanced in place. Returns the epoch's metrics.

    ``step``: the :class:`~sarvit.train.tasks.TrainingTask` the optimizer trains -- as it is, or wrapped in
    DDP and/or ``torch.compile`` (its :meth:`after_step` and EMA are reached through ``timm.utils.unwrap_model``).
    Metrics: mean ``loss``, ``ce`` (the task loss), one ``reg_<name>`` per term
    (:func:`~sarvit.train.regularizers.log_key`), the task's own metrics, ``entropy`` (the spatial-entropy term;
    None without it), ``top1`` (train, on the augmented batches), ``lr`` at the end, ``img_per_s`` (all
    processes), ``skipped_steps``. The means are None when every step was skipped.
    ``probe`` (a :class:`~sarvit.train.diagnostics.TrainingProbe`) measures every ``probe.every`` steps; its
    epoch means join the metrics (``diag_*``). ``gate`` (a :class:`~sarvit.train.loss_gate.LossGate`) scales
    the gated terms' weights by the task's progress.
    """
    step.train()
    device, epoch = info.device, state.epoch
    task = unwrap_model(step)
    keys = [log_key(name) for name in settings.reg_names]
    means = _EpochMeans(device, keys)
    weights = torch.tensor(settings.reg_weights, device=device, dtype=torch.float32)
    optimizer, scheduler = optimization.optimizer, optimization.scheduler
    params = [p for p in step.parameters() if p.requires_grad]
    images, skipped, start = 0, 0, time.perf_counter()
    steps = len(loader)
    for index, batch in enumerate(batches(loader)):
        batch = _to_device(batch, device)
        with autocast_context(device, settings.amp_dtype):
            step_weights = weights if gate is None else gate.weights(weights)
            loss, task_loss, terms, out = loss_terms(step, batch, step_weights)
            measured = probe is not None and probe.due(index)
            if measured:
                probe.measure(_images(batch), task_loss, terms, step_weights)
        finite = torch.isfinite(loss.detach())
        optimizer.zero_grad(set_to_none=True)
        if settings.skip_nonfinite and not _step_is_finite(finite, info):
            skipped += 1
            state.skipped_in_a_row += 1
            if state.skipped_in_a_row >= settings.max_skipped:
                raise NonFiniteLoss(epoch, index, f"{state.skipped_in_a_row} steps in a row had a non-finite loss "
                                                  f"and were skipped (up to epoch {epoch + 1}, step {index + 1}); "
                                                  f"stopping (--max-skipped-steps {settings.max_skipped})")
        else:
            state.skipped_in_a_row = 0
            _backward_and_step(loss, optimizer, params, settings.clip_grad, optimization.scaler)
            if measured:
                probe.after_update()
            if gate is not None:
                gate.update(task_loss)
            if optimization.ema is not None:
                optimization.ema.update(task.evaluation_model(), step=state.global_step + 1)
            if not settings.skip_nonfinite:
                means.watch(finite, index)
            means.add(loss, task_loss, terms, out)
        state.global_step += 1
        task.after_step(state.global_step, settings.total_steps)
        scheduler.step_update(num_updates=state.global_step)
        images += _batch_size(batch)
        if (index + 1) % settings.log_interval == 0 or index + 1 == steps:
            means.check(info, epoch)  # host syncs at log points only: the non-finite count, then the means
            metrics = means.read()    # on every process: they all take part in the means' sync
            if progress is not None:
                progress.set_postfix(**_shown(metrics, settings, optimizer, skipped))
        if progress is not None:
            progress.update(1)
    elapsed = time.perf_counter() - start
    means.check(info, epoch)
    metrics = means.read() if steps else {}
    return {**metrics, "entropy": metrics.get(log_key("spatial-entropy")),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "img_per_s": images * info.world_size / max(elapsed, 1e-9),
            "skipped_steps": skipped,  # every process skips the same steps (the decision is all-reduced)
            **({} if probe is None else probe.read()), **({} if gate is None else gate.read())}


def _images(batch: Any) -> Optional[torch.Tensor]:
    """The batch's images when they are one tensor ``(images, targets, ...)``; None for several crops."""
    first = batch[0] if isinstance(batch, (list, tuple)) and batch else None
    return first if isinstance(first, torch.Tensor) and first.dim() == 4 else None


def _shown(means: dict, settings: StepSettings, optimizer, skipped: int) -> dict[str, Any]:
    """The progress bar's postfix."""
    shown: dict[str, Any] = {"loss": "n/a" if means["loss"] is None else f"{means['loss']:.4f}"}
    for name in settings.reg_names:
        if means.get(log_key(name)) is not None:
            shown[name] = f"{means[log_key(name)]:.4f}"
    shown["lr"] = f"{optimizer.param_groups[0]['lr']:.2e}"
    if settings.skip_nonfinite:
        shown["skipped"] = skipped
    return shown


def _to_device(batch: Any, device: torch.device) -> Any:
    """The loader's batch on ``device``: tensors, and lists/tuples of them (several crops of one image)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(item, device) for item in batch)
    return batch


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    while isinstance(first, (list, tuple)):
        first = first[0]
    return int(first.shape[0])


def _step_is_finite(finite: torch.Tensor, info: DistInfo) -> bool:
    """One host sync: did every process get a finite loss this step?"""
    flag = (~finite).to(torch.float32).reshape(1)
    return float(all_reduce_sum(flag, info)) == 0.0


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

