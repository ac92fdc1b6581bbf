"""Training tasks: what a batch becomes (the role of ``timm.task.TrainingTask``).

The loop (:func:`sarvit.train.loop.train_one_epoch`) runs every task through one code path::

    out = task(batch)                                  # a TaskOutput
    loss = out.loss + (weights * out.terms).sum()      # the regularizer terms on top of any task
    backward, step; task.after_step(global_step, total_steps)

A task is an ``nn.Module`` that owns ``self.model`` (a :class:`~sarvit.train.regularizers.RegularizedModel`:
``forward(x) -> (outputs, terms)``) and any parts of its own (heads, a teacher, a centre), so one DDP wrap, one
``torch.compile`` and one ``state_dict`` cover everything. Frozen parts (an EMA teacher) have
``requires_grad=False``. A self-supervised method is a new task, not a new loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["TaskOutput", "TrainingTask", "SupervisedTask", "RotationTask"]


@dataclass
class TaskOutput:
    """One batch's result.

    Attributes:
        loss: the scalar task loss (the loop adds ``sum(weight_i * terms[i])``).
        terms: ``[n]`` unweighted regularizer terms (the RegularizedModel's), or None without terms.
        logits: ``[B, K]`` for accuracy metrics (None for self-supervised tasks).
        targets: ``[B]`` class indices or ``[B, K]`` soft (mixup) targets matching ``logits``.
        metrics: extra per-batch device scalars, averaged over the epoch and logged as ``train_<name>``.
    """

    loss: torch.Tensor
    terms: Optional[torch.Tensor]
    logits: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingTask(nn.Module):
    """The base of every task: ``forward(batch) -> TaskOutput``; override :meth:`after_step` for EMA / momentum
    updates and :meth:`evaluation_model` when another network than the student is the one to evaluate."""

    name = "task"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> TaskOutput:
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """The model's no-decay names (position embedding, [CLS] token) under this module's prefix (timm's
        optimizer factory reads them)."""
        own = getattr(self.model, "no_weight_decay", None)
        return {f"model.{name}" for name in (own() if own is not None else ())}

    def after_step(self, global_step: int, total_steps: int) -> None:
        """Called after every optimizer step (skipped steps included: the schedule moves on)."""

    def evaluation_model(self) -> nn.Module:
        """The network evaluation and analysis read: the trained model itself (not its regularizers)."""
        return self.model.model


class SupervisedTask(TrainingTask):
    """Classification: ``batch = (images [B, 3, S, S], labels [B])``; ``criterion(logits, targets)``.

    ``mixup`` (timm's :class:`~timm.data.Mixup`, training only) mixes the batch and turns the labels into soft
    targets ``[B, K]`` first; ``criterion`` must then take soft targets (DeiT's choice: soft-target CE).
    """

    name = "supervised"

    def __init__(self, model: nn.Module, criterion: Callable, mixup: Optional[Callable] = None) -> None:
        super().__init__(model)
        self.criterion, self.mixup = criterion, mixup

    def forward(self, batch: Any) -> TaskOutput:
        images, targets = batch[0], batch[1]
        if self.mixup is not None and self.training:
            images, targets = self.mixup(images, targets)
        logits, terms = self.model(images)
        return TaskOutput(self.criterion(logits, targets), terms, logits, targets)


class RotationTask(SupervisedTask):
    """ARViT's rotation pretext: classify which of 0/90/180/270 degrees each image was turned by.

    The batch comes from :func:`sarvit.data.pretext_dataset` (every image in its four rotations, the label its
    rotation's index), so the step is a 4-class classification. Mixup is off unless asked for (a mixed image
    has no single rotation: :data:`sarvit.train.recipes.PRETEXT_VALUES`).
    """

    name = "rotation"
