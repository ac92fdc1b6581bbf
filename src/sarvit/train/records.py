"""Per-epoch records of a run: JSON lines, TensorBoard scalars and a PNG of the curves (rank 0 only)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..checkpoints import write_text

__all__ = ["RunLog", "plot_curves"]

# (log key, TensorBoard tag)
_SCALARS = (
    ("train_loss", "train/loss"), ("train_ce", "train/ce"), ("train_top1", "train/top1"),
    ("train_entropy", "train/spatial_entropy"), ("train_sar_loss_gate", "train/sar_loss_gate"),
    ("lr", "train/lr"), ("img_per_s", "train/img_per_s"), ("val_loss", "val/loss"), ("val_top1", "val/top1"),
    ("val_top5", "val/top5"), ("val_entropy", "val/spatial_entropy"), ("val_ema_top1", "val/ema_top1"),
    ("val_jaccard", "val/jaccard"),
)


def _term_tags(line: dict) -> tuple[tuple[str, str], ...]:
    """The regularizer terms and diagnostics of a line: ``train_reg_tv`` -> TensorBoard tag ``train/reg_tv``,
    ``train_diag_grad_task`` -> ``diagnostics/grad_task``."""
    return (tuple((key, "train/" + key[len("train_"):]) for key in line if key.startswith("train_reg_"))
            + tuple((key, "diagnostics/" + key[len("train_diag_"):]) for key in line if key.startswith("train_diag_")))


class RunLog:
    """``log.jsonl`` (one line per epoch) and TensorBoard events under ``output_dir``.

    ``history`` holds the lines written so far; a resumed run starts from the checkpoint's history,
    so the file never holds epochs the checkpoint does not know.
    """

    def __init__(self, output_dir: Path, history: list[dict], tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "log.jsonl"
        self.history = [dict(line) for line in history]
        # the log of a resumed run is the checkpoint's history: lines of epochs after it are dropped
        write_text("".join(json.dumps(line) + "\n" for line in self.history), self.path)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a missing one must not stop training
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=len(self.history))

    def add(self, line: dict) -> None:
        self.history.append(dict(line))
        # rewritten whole (atomic: no torn line, no link followed); a log is a few hundred lines at most
        write_text("".join(json.dumps(entry) + "\n" for entry in self.history), self.path)
        if self.writer is not None:
            for key, tag in _SCALARS + _term_tags(line):
                if line.get(key) is not None:
                    self.writer.add_scalar(tag, line[key], line["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def plot_curves(history: list[dict], path: Path) -> Optional[Path]:
    """Loss, spatial entropy, each regularizer term (when there are any), accuracy and learning rate per epoch."""
    if not history:
        return None
    import itertools

    from ..figures import new_figure, save_figure

    epochs = [line["epoch"] + 1 for line in history]  # counted from 1, as the terminal does
    terms = tuple(dict.fromkeys(key for line in history for key in line if key.startswith("train_reg_")))
    diagnostics = _diagnostic_panels(history)
    panels = (
        ("loss", (("train_loss", "train total"), ("train_ce", "train CE"), ("val_loss", "val CE"))),
        ("spatial entropy", (("train_entropy", "train"), ("val_entropy", "val"))),
        *((("regularizer terms (train, unweighted)", tuple((key, key[len("train_reg_"):]) for key in terms)),)
          if terms else ()),
        ("accuracy (%)", (("train_top1", "train top-1"), ("val_top1", "val top-1"), ("val_top5", "val top-5"),
                          ("val_ema_top1", "EMA top-1"), ("val_jaccard", "attention Jaccard"))),
        ("learning rate", (("lr", "lr"),)),
        *diagnostics,
    )
    figure, axes = new_figure(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    # Lines that coincide (train total = CE + lambda * entropy, with lambda small) stay visible: each series
    # of a panel has its own dash pattern and marker, later ones drawn thinner on top.
    styles = (("-", "o", 2.6), ("--", "s", 1.8), (":", "^", 1.4), ("-.", "D", 1.2))
    for axis, (title, series) in zip(axes, panels):
        for (key, label), (dashes, marker, width) in zip(series, itertools.cycle(styles)):  # every --reg term
            values = [line.get(key) for line in history]
            if any(value is not None for value in values):
                axis.plot(epochs, [float("nan") if v is None else v for v in values], linestyle=dashes,
                          marker=marker, ms=3.5, lw=width, label=label)
        axis.set_title(title)
        if title in _LOG_PANELS and axis.lines:
            axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)  # atomic, no link followed


_LOG_PANELS = ("gradient norm (diagnostics)", "last block (diagnostics)")


def _diagnostic_panels(history: list[dict]) -> tuple:
    """The panels of the ``train_diag_*`` keys (:mod:`sarvit.train.diagnostics`), when the run has them."""
    keys = tuple(dict.fromkeys(key for line in history for key in line if key.startswith("train_diag_")))
    if not keys:
        return ()
    short = lambda key: key[len("train_diag_"):]  # noqa: E731
    grads = tuple((key, short(key)[len("grad_"):]) for key in keys if short(key).startswith("grad_"))
    last = tuple((key, short(key)) for key in keys if short(key) in ("update_ratio_last", "min_map_mass"))
    heads = tuple((key, short(key).replace("attention_entropy_", "attn ").replace("spatial_entropy_", "SE "))
                  for key in keys if "entropy_h" in key)
    return tuple(panel for panel in (("gradient norm (diagnostics)", grads), ("last block (diagnostics)", last),
                                     ("per-head entropy (diagnostics)", heads)) if panel[1])
