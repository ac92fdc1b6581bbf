"""The per-step schedules of DINO and MoCo-v3: cosine ramps (momentum, weight decay) and the teacher temperature."""
from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["cosine_ramp", "teacher_temperature", "CosineWeightDecay"]


def cosine_ramp(start: float, end: float, step: int, total: int) -> float:
    """``start`` at ``step`` 0 to ``end`` at ``step == total`` along half a cosine (DINO's ``cosine_scheduler``,
    MoCo-v3's momentum): ``end + (start - end) * (1 + cos(pi * step / total)) / 2``.

    >>> [round(cosine_ramp(0.996, 1.0, step, 100), 6) for step in (0, 50, 100)]
    [0.996, 0.998, 1.0]
    """
    if total <= 0:
        raise ValueError(f"total must be a positive number of steps, got {total}")
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def teacher_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature in ``epoch``: linear from ``warmup_temp`` (epoch 0) to ``temp`` (epoch
    ``warmup_epochs - 1``, both ends included as ``np.linspace`` has them), then ``temp``.

    >>> [round(teacher_temperature(e, 0.04, 0.07, 4), 3) for e in range(6)]
    [0.04, 0.05, 0.06, 0.07, 0.07, 0.07]
    """
    if epoch >= warmup_epochs:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


class CosineWeightDecay:
    """A timm scheduler (stepped per update) that also moves the weight decay of ``optimizer``'s decaying groups
    (timm leaves biases and norms at 0) along ``cosine_ramp(start, end, updates, total_steps)`` -- DINO's
    0.04 -> 0.4 -- so the training loop's one ``scheduler.step_update`` call drives both. Its state dict is the
    wrapped scheduler's (the decay is a function of the update count, and the optimizer's state holds its value).

    Example:
        >>> weight = torch.nn.Parameter(torch.zeros(2, 2))
        >>> optimizer = torch.optim.AdamW([{"params": [weight], "weight_decay": 0.04}], lr=1.0)
        >>> class Fixed:
        ...     def step_update(self, num_updates): pass
        >>> schedule = CosineWeightDecay(Fixed(), optimizer, 0.04, 0.4, total_steps=10)
        >>> schedule.step_update(num_updates=5); round(optimizer.param_groups[0]["weight_decay"], 4)
        0.22
    """

    def __init__(self, scheduler: Any, optimizer: torch.optim.Optimizer, start: float, end: float,
                 total_steps: int) -> None:
        self.scheduler, self.optimizer = scheduler, optimizer
        self.start, self.end, self.total_steps = float(start), float(end), int(total_steps)
        # indices, not the groups: optimizer.load_state_dict (a resume) replaces the group dicts
        self.decaying = [index for index, group in enumerate(optimizer.param_groups) if group["weight_decay"] > 0]

    def step_update(self, num_updates: int) -> None:
        self.scheduler.step_update(num_updates=num_updates)
        for index in self.decaying:
            self.optimizer.param_groups[index]["weight_decay"] = cosine_ramp(self.start, self.end, num_updates,
                                                                            self.total_steps)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
