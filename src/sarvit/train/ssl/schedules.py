"""The per-step schedules of DINO and MoCo-v3: cosine ramps (momentum, weight decay) and the teacher temperature."""
from __future__ import annotations

import math

__all__ = ["cosine_ramp", "teacher_temperature"]


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
