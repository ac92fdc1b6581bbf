"""The run's expected duration, told once its first steps are timed (rank 0)."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional

__all__ = ["Pace", "duration_words", "progress_bar", "write_line"]


def duration_words(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Pace:
    """Wraps an epoch's progress bar (``update``, ``set_postfix``, ``close`` pass through) and, after ``timed``
    steps that follow ``settle`` untimed ones (loader start-up, first-call overheads), calls ``say`` once with
    the estimate for the rest of the run: training steps, plus evaluation at about a third of a training
    image's cost per validation image (a forward pass only)."""

    def __init__(self, bar, *, steps_per_epoch: int, epochs: int, train_images: int, val_images: int,
                 say: Callable[[str], None], settle: int = 2, timed: int = 10) -> None:
        self.bar, self.say = bar, say
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.eval_share = val_images / max(1, 3 * train_images)
        self.settle = min(settle, max(0, steps_per_epoch - 2))
        self.timed = max(1, min(timed, steps_per_epoch - self.settle))
        self.step, self.started = 0, time.perf_counter()
        self.told: Optional[float] = None

    def update(self, steps: int = 1) -> None:
        self.step += steps
        if self.step == self.settle:
            self.started = time.perf_counter()
        elif self.told is None and self.step == self.settle + self.timed:
            per_step = (time.perf_counter() - self.started) / self.timed
            self.told = per_step * self.steps_per_epoch * (1 + self.eval_share) * self.epochs
            self.say(f"estimated duration: {duration_words(self.told)} for {self.epochs} epoch(s) "
                     f"({per_step:.2f} s per step of training, timed over {self.timed} steps)")
        if self.bar is not None:
            self.bar.update(steps)

    def set_postfix(self, **kwargs) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kwargs)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_line(message: str) -> None:
    """A line between progress-bar updates."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def progress_bar(shown: bool, total: int, epoch: int, epochs: int):
    """The epoch's tqdm bar on stderr (None where ``shown`` is false: ranks other than 0)."""
    if not shown:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False, file=sys.stderr,
                dynamic_ncols=True, disable=None)
