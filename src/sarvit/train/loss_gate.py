"""SAR's loss waits for the task to learn: the spatial-entropy weight opens as the task loss leaves chance.

Why (issue 18, measured in docs/results-sar-stall.md): the spatial entropy is invariant to the scale of the maps
S, so its gradient is orthogonal to the last block's query/key weights and grows as ``1 / scale(S)``. While the
task loss sits at chance the task's own gradient on those weights is tiny (a near-uniform attention passes
almost none), so AdamW, which normalises every coordinate, moves them at its full step in the entropy's
direction alone; steps orthogonal to a weight only lengthen it, so the maps' scale grows (their mass
``sum ReLU(S - mean)`` went from 0.24 to 11.7 in six epochs), the [CLS] softmax saturates on a few patches
chosen before the task has learned anything, and with SAR's surgery (no skip around that attention) the classifier sees only
those patches while the saturated softmax passes no gradient to the others: the task loss stays at chance.

:class:`LossGate` multiplies the term's weight by ``clamp((chance - L) / (drop * chance), 0, 1)``, ``L`` a
running mean of the task loss on the device and ``chance`` = ``ln(classes)`` (the loss of a uniform guess, with
hard or soft targets alike): nothing while the task has not learned, the papers' full weight once its loss is
``drop`` (5 %) below chance. ``drop = 0`` is the papers' exact form, the weight always on.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["LossGate", "DEFAULT_DROP"]

DEFAULT_DROP = 0.05
_DECAY = 0.9  # of the task loss's running mean, per step


class LossGate:
    """Device-side gate of some terms' weights by the task's progress; no host synchronisation.

    Args:
        gated: one flag per term (True: gated).
        num_classes: the task's classes; chance is ``ln(num_classes)``.
        drop: the fraction below chance at which the gated weights are fully open (> 0).
        device: where the running mean lives.

    Example:
        >>> gate = LossGate([True, False], num_classes=10, drop=0.05, device=torch.device("cpu"))
        >>> gate.weights(torch.tensor([0.01, 0.5]))   # at chance: the gated term is off
        tensor([0.0000, 0.5000])
    """

    def __init__(self, gated: Sequence[bool], num_classes: int, drop: float, device: torch.device) -> None:
        if not drop > 0:
            raise ValueError(f"drop must be > 0 (0 means no gate: build none), got {drop!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
        self.chance = math.log(num_classes)
        self.drop = drop
        self.mask = torch.tensor([bool(flag) for flag in gated], device=device)
        self.running = torch.full((), self.chance, device=device)
        self._open_sum = torch.zeros((), device=device, dtype=torch.float64)
        self._steps = 0

    def openness(self) -> torch.Tensor:
        """0 (closed) to 1 (open), a device scalar."""
        return ((self.chance - self.running) / (self.drop * self.chance)).clamp(0.0, 1.0)

    def weights(self, weights: torch.Tensor) -> torch.Tensor:
        """``weights [n]`` with the gated ones scaled by :meth:`openness`."""
        return torch.where(self.mask, weights * self.openness(), weights)

    def update(self, task_loss: torch.Tensor) -> None:
        """After a step: fold its task loss into the running mean (a non-finite loss is left out)."""
        loss = task_loss.detach().float()
        self._open_sum += self.openness().double()
        self._steps += 1
        self.running = torch.where(torch.isfinite(loss), _DECAY * self.running + (1 - _DECAY) * loss, self.running)

    def state_dict(self) -> dict[str, float]:
        """The running task loss (one host sync; checkpointed, so that a resumed run gates as the whole one)."""
        return {"running": float(self.running)}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.running = torch.full((), float(state["running"]), device=self.running.device)

    def read(self) -> dict[str, float]:
        """The epoch's mean openness (one host sync), then a fresh epoch."""
        if not self._steps:
            return {}
        mean = float(self._open_sum) / self._steps
        self._open_sum.zero_()
        self._steps = 0
        return {"sar_loss_gate": mean}
