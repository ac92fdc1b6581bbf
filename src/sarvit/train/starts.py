"""Where a run's weights come from: ``--finetune`` (new head), ``--weights`` (same head) or ``--resume`` (the whole
state of a run: weights, regularizer heads, optimizer, schedule, scaler, progress, random states)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from timm.layers import resample_abs_pos_embed

from ..checkpoints import FORMAT, check_resumable, load_checkpoint, resolve_checkpoint_path, stored_spec
from ..errors import SarvitError
from ..models import ModelSpec, load_weights
from .rng import set_rng_state

__all__ = ["Resumed", "load_finetune", "load_start_weights", "read_resume", "restore_schedule", "SCHEDULE_KEYS"]

# the options the learning-rate schedule is built from: a resumed run that changes one gets a new schedule
SCHEDULE_KEYS = ("epochs", "sched", "lr", "unscale_lr", "batch_size", "min_lr", "warmup_lr", "warmup_epochs",
                 "decay_epochs", "decay_rate")


def finetune_weights(model: torch.nn.Module, state: dict) -> dict:
    """DeiT's fine-tuning touch: resample the position embedding to the new grid."""
    own = model.pos_embed
    theirs = state.get("pos_embed")
    if theirs is not None and theirs.shape != own.shape and theirs.shape[-1] == own.shape[-1]:
        state = dict(state)
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(theirs, list(model.patch_embed.grid_size),
                                                    num_prefix_tokens=prefix)
    return state


def load_finetune(model: torch.nn.Module, path: str) -> str:
    """``--finetune``: the weights of ``path`` with a new head (and last LayerNorm); returns the load report."""
    state = load_checkpoint(path)["model"]
    return str(load_weights(model, finetune_weights(model, state), new_head=True, new_last_norm=True))


def load_start_weights(model: torch.nn.Module, path: str) -> str:
    """``--weights``: the weights of ``path``, same head; returns the load report."""
    state = load_checkpoint(path)["model"]
    try:
        return str(load_weights(model, finetune_weights(model, state), new_last_norm=True))
    except SarvitError as error:
        raise SarvitError(f"--weights {path}: {error} (for a new head use --finetune)") from None


@dataclass
class Resumed:
    """What a ``--resume`` checkpoint hands the run besides the weights it loaded (``plain``: it held plain
    timm/DeiT weights only, so the run starts from them at epoch 0 and nothing else is set)."""

    path: Path
    checkpoint: dict
    plain: bool = False
    report: str = ""
    ema_state: Optional[dict] = None
    start_epoch: int = 0
    global_step: int = 0
    best_top1: float = -1.0
    best_epoch: int = -1
    history: list = field(default_factory=list)


def _check_fits(spec: ModelSpec, checkpoint: dict, path: str) -> None:
    """A resumed checkpoint must have been trained with the same last-block surgery."""
    stored = stored_spec(checkpoint)
    if stored is not None and stored.sar != spec.sar:
        raise SarvitError(
            f"--resume {path}: the checkpoint's last block was trained with {stored.sar}, this run asks for {spec.sar}; "
            "resume with the same SAR switches, or start a new run from these weights with --finetune")


@contextlib.contextmanager
def _restoring(path, what: str):
    """A resumed checkpoint's ``what`` that torch or Python cannot restore is one line naming it."""
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError) as error:
        raise SarvitError(f"--resume {path}: the checkpoint's {what} cannot be restored ({type(error).__name__}: "
                          f"{str(error)[:120]}); resume an undamaged checkpoint, or start from these weights with "
                          "--finetune") from None


def read_resume(path: str, spec: ModelSpec, regularized, epochs: int, rank: int, world_size: int) -> Resumed:
    """Load ``path`` into ``regularized`` (its model and the regularizers' own weights) and restore the random
    states; the optimizer and schedule are :func:`restore_schedule`'s."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("format") == FORMAT:
        check_resumable(checkpoint, path)
    _check_fits(spec, checkpoint, path)
    try:
        report = str(load_weights(regularized.model, checkpoint["model"]))
    except SarvitError as error:
        raise SarvitError(f"--resume {path}: {error}") from None
    resumed = Resumed(resolve_checkpoint_path(path), checkpoint, report=report)
    if checkpoint.get("format") != FORMAT:  # plain weights (DeiT/timm): start from them at epoch 0
        resumed.plain = True
        return resumed
    try:
        regularized.load_trained_state(checkpoint.get("regularizers", {}))
    except SarvitError as error:
        raise SarvitError(f"--resume {path}: {error}; resume with the same --reg terms, or start a new run from "
                          "these weights with --finetune") from None
    resumed.start_epoch = int(checkpoint["epoch"]) + 1
    if resumed.start_epoch >= epochs:
        raise SarvitError(
            f"--resume {path}: that run has finished {resumed.start_epoch} epochs and --epochs is {epochs}, so "
            f"there is nothing to train; pass --epochs N with N > {resumed.start_epoch} to extend it, or use "
            f"`sarvit eval --weights {path}`")
    resumed.global_step = int(checkpoint["global_step"])
    resumed.best_top1, resumed.best_epoch = float(checkpoint["best_top1"]), int(checkpoint["best_epoch"])
    resumed.history = list(checkpoint.get("history", []))
    resumed.ema_state = checkpoint.get("model_ema")
    states = checkpoint["rng"]
    with _restoring(path, "random-number state"):
        set_rng_state(states[rank] if len(states) == world_size else states[0])
    return resumed


def restore_schedule(resumed: Resumed, config, optimization, lr: float, build_scheduler: Callable[[], object]) -> str:
    """Restore the optimizer's, scaler's and scheduler's states into ``optimization`` (a
    :class:`~sarvit.train.loop.Optimization` built for this run); where the run now changes an option the schedule
    is built from (e.g. ``--epochs`` raised to extend a finished run), a new schedule at the resumed step instead.

    Returns a note saying what changed ("" when nothing did).
    """
    checkpoint = resumed.checkpoint
    with _restoring(resumed.path, "optimizer"):
        optimization.optimizer.load_state_dict(checkpoint["optimizer"])
    if optimization.scaler is not None and "scaler" in checkpoint:
        optimization.scaler.load_state_dict(checkpoint["scaler"])
    stored = checkpoint.get("config", {})
    changed = {key: (stored.get(key), config[key]) for key in SCHEDULE_KEYS if stored.get(key) != config[key]}
    if not changed:
        with _restoring(resumed.path, "scheduler"):
            optimization.scheduler.load_state_dict(checkpoint["scheduler"])
        return ""
    for group in optimization.optimizer.param_groups:
        group["initial_lr"] = lr
    optimization.scheduler = build_scheduler()
    optimization.scheduler.step_update(num_updates=resumed.global_step)
    return ("the learning-rate schedule follows the changed options "
            + ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items()))
