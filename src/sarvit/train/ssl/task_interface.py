"""The training-task interface (issue #20's ``sarvit.train.tasks``), as much of it as the self-supervised tasks use.

Defined here until the structure issue's ``tasks.py`` lands; the two definitions are the same contract:
``out = task(batch)``; ``loss = out.loss + (weights * out.terms).sum()``; step; ``task.after_step(...)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

__all__ = ["TaskOutput", "TrainingTask"]


@dataclass
class TaskOutput:
    """What a task makes of a batch: the scalar task ``loss``, the unweighted regularizer ``terms`` ``[n]`` (None
    without terms), ``logits``/``targets`` for accuracy (None for self-supervised tasks), extra device scalars."""

    loss: torch.Tensor
    terms: Optional[torch.Tensor]
    logits: Optional[torch.Tensor] = None
    targets: Optional[torch.Tensor] = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class TrainingTask(nn.Module):
    """What a batch becomes; owns ``self.model`` (a :class:`~sarvit.train.regularizers.RegularizedModel`) and
    its own parts (heads, a momentum encoder), so one DDP wrap and one state dict cover everything."""

    name: str = ""

    def forward(self, batch) -> TaskOutput:  # pragma: no cover - every task defines it
        raise NotImplementedError

    def after_step(self, global_step: int, total_steps: int) -> None:
        """Called after each optimizer step, ``global_step`` steps done of ``total_steps``; default: nothing."""

    def evaluation_model(self) -> nn.Module:
        """The network evaluation and analysis read."""
        return self.model.model
