"""A whole run: :func:`train` (fit, evaluate each epoch, checkpoint, log) and :func:`evaluate_checkpoint`."""
from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.distributed as dist
from timm.layers import resample_abs_pos_embed
from timm.utils import ModelEmaV3
from torch.nn.parallel import DistributedDataParallel

from ..checkpoints import (FORMAT, RunFolder, check_resumable, checkpoint_content, load_checkpoint,
                           model_from_checkpoint, reconcile, resolve_checkpoint_path, save_atomic, stored_spec,
                           write_json)
from ..data import MaskedDataset
from ..errors import SarvitError
from ..metrics import AttentionJaccard
from ..models import ModelSpec, has_class_token, load_weights, sar_config
from . import build
from .config import save_config
from .distributed import DistInfo, barrier, broadcast_object, setup_distributed
from .loop import NonFiniteLoss, StepSettings, evaluate, nonfinite_weights, train_one_epoch
from .pace import Pace
from .pictures import AttentionPictures, picture_epochs
from .records import RunLog, plot_curves
from .rng import rng_state, set_rng_state
from .regularizers import RegularizedModel, log_key

__all__ = ["TrainResult", "train", "evaluate_checkpoint", "default_output_dir"]


@dataclass
class TrainResult:
    """What a finished run leaves: the model (unwrapped), its per-epoch history and the files written.

    ``regularizers``: the modules of the run's loss terms by name (DRLoc's trained head among them).
    """

    model: torch.nn.Module
    history: list[dict] = field(default_factory=list)
    best_top1: float = 0.0
    best_epoch: int = -1
    output_dir: Optional[Path] = None
    paths: dict[str, Union[Path, list[Path]]] = field(default_factory=dict)
    regularizers: Optional[torch.nn.ModuleDict] = None


_SCHEDULE_KEYS = ("epochs", "sched", "lr", "unscale_lr", "batch_size", "min_lr", "warmup_lr", "warmup_epochs",
                  "decay_epochs", "decay_rate")


def default_output_dir(config: dict[str, Any]) -> Path:
    return Path("output") / f"{config['data_set']}-{time.strftime('%Y%m%d-%H%M%S')}"


def seed_everything(seed: int) -> None:
    if not 0 <= seed < 2 ** 63:  # what torch.manual_seed takes
        raise SarvitError(f"--seed {seed}: expected an integer from 0 to 2**63 - 1")
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _say(info: DistInfo, message: str) -> None:
    if info.is_main:
        print(message, flush=True)


def _check_fits(spec: ModelSpec, checkpoint: dict, path: str) -> None:
    """A resumed checkpoint must have been trained with the same last-block surgery."""
    stored = stored_spec(checkpoint)
    if stored is not None and stored.sar != spec.sar:
        raise SarvitError(
            f"--resume {path}: the checkpoint's last block was trained with {stored.sar}, this run asks for {spec.sar}; "
            "resume with the same SAR switches, or start a new run from these weights with --finetune")


def _finetune_weights(model: torch.nn.Module, state: dict) -> dict:
    """DeiT's fine-tuning touch: resample the position embedding to the new grid."""
    own = model.pos_embed
    theirs = state.get("pos_embed")
    if theirs is not None and theirs.shape != own.shape and theirs.shape[-1] == own.shape[-1]:
        state = dict(state)
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(theirs, list(model.patch_embed.grid_size),
                                                    num_prefix_tokens=prefix)
    return state


class _Run:
    """The state of one training run; methods are the phases of :func:`train`."""

    def __init__(self, config: dict[str, Any], info: DistInfo) -> None:
        self.config, self.info = config, info
        self.start_epoch, self.global_step = 0, 0
        self.best_top1, self.best_epoch = -1.0, -1
        self.history: list[dict] = []
        self.out: Optional[Path] = None
        self.folder: Optional[RunFolder] = None
        self.log: Optional[RunLog] = None
        self.last_saved: Optional[tuple[Path, int]] = None   # the newest good checkpoint and its epoch
        self.skipped_in_a_row = 0

    def setup(self) -> None:
        config, info = self.config, self.info
        seed_everything(config["seed"] + info.rank)
        if config["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        download_first = bool(config["download"]) and info.distributed  # rank 0 downloads, the others wait
        if download_first and not info.is_main:
            barrier(info)
        train_set, val_set, num_classes = build.build_datasets(config)
        if download_first and info.is_main:
            barrier(info)
        self.num_classes = num_classes
        self.train_loader = build.train_loader(train_set, config, info)
        self.val_loader = build.eval_loader(val_set, config, info)
        self.spec = build.model_spec(config, num_classes)
        self.model = self.spec.build().to(info.device)
        # the model and its regularizers' modules (DRLoc's head) train, synchronise and checkpoint together
        self.regularized = RegularizedModel(self.model, config["regularizers"]).to(info.device)
        self.jaccard = _attention_jaccard(val_set, self.model)
        build.check_input_fits(self.model, {"training": train_set, "validation": val_set}, config)
        self.lr = build.scaled_lr(config, info.world_size)
        self.optimizer = build.build_optimizer(self.regularized, config, self.lr)
        self.scheduler = build.build_scheduler(self.optimizer, config, len(self.train_loader))
        self.mixup = build.build_mixup(config, num_classes)
        self.criterion = build.build_criterion(config, self.mixup)
        self.amp = build.amp_dtype(config, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type) if self.amp == torch.float16 else None
        if config["finetune"]:
            self._load_finetune(config["finetune"])
        if config["weights"]:
            self._load_start_weights(config["weights"])
        ema_state = self._load_resume(config["resume"]) if config["resume"] else None
        self.ema = None
        if config["model_ema"]:  # a copy of the weights as loaded, or the resumed run's own average
            self.ema = ModelEmaV3(self.model, decay=config["model_ema_decay"],
                                  use_warmup=bool(config.get("model_ema_warmup")))
            if ema_state is not None:
                self.ema.module.load_state_dict(ema_state)
        terms = self.regularized.terms
        self.settings = StepSettings(reg_names=tuple(t.name for t in terms), reg_weights=tuple(t.weight for t in terms),
                                     clip_grad=config["clip_grad"], skip_nonfinite=bool(config["skip_nonfinite"]),
                                     max_skipped=int(config["max_skipped_steps"]),
                                     log_interval=max(1, int(config["log_interval"])), amp_dtype=self.amp)
        # the step's forward: the model with its loss terms, synchronised by DDP and compiled as one
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        self.ddp = (DistributedDataParallel(self.regularized, device_ids=device_ids) if info.distributed
                    else self.regularized)
        if config["compile"]:
            self.ddp = build.compile_step(self.ddp, config)

    def _load_finetune(self, path: str) -> None:
        state = load_checkpoint(path)["model"]
        report = load_weights(self.model, _finetune_weights(self.model, state), new_head=True,
                              new_last_norm=True)
        _say(self.info, f"fine-tuning from {path}: {report}")

    def _load_start_weights(self, path: str) -> None:
        state = load_checkpoint(path)["model"]
        try:
            report = load_weights(self.model, _finetune_weights(self.model, state), new_last_norm=True)
        except SarvitError as error:
            raise SarvitError(f"--weights {path}: {error} (for a new head use --finetune)") from None
        _say(self.info, f"starting from the weights in {path}: {report}")

    def _load_resume(self, path: str) -> Optional[dict]:
        """Load a checkpoint to continue from; returns its EMA weights (None if it has none)."""
        checkpoint = load_checkpoint(path)
        if checkpoint.get("format") == FORMAT:
            check_resumable(checkpoint, path)
        _check_fits(self.spec, checkpoint, path)
        try:
            report = load_weights(self.model, checkpoint["model"])
        except SarvitError as error:
            raise SarvitError(f"--resume {path}: {error}") from None
        if checkpoint.get("format") != FORMAT:  # plain weights (DeiT/timm): start from them at epoch 0
            _say(self.info, f"starting from the weights in {path}: {report}")
            return None
        try:
            self.regularized.load_trained_state(checkpoint.get("regularizers", {}))
        except SarvitError as error:
            raise SarvitError(f"--resume {path}: {error}; resume with the same --reg terms, or start a new run from "
                              "these weights with --finetune") from None
        with _restoring(path, "optimizer"):
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        changed = {key: (checkpoint["config"].get(key), self.config[key]) for key in _SCHEDULE_KEYS
                   if checkpoint.get("config", {}).get(key) != self.config[key]}
        if changed:  # e.g. --epochs raised to extend a finished run: the new schedule applies
            for group in self.optimizer.param_groups:
                group["initial_lr"] = self.lr
            self.scheduler = build.build_scheduler(self.optimizer, self.config, len(self.train_loader))
            self.scheduler.step_update(num_updates=int(checkpoint["global_step"]))
            _say(self.info, "the learning-rate schedule follows the changed options "
                 + ", ".join(f"{key} {old} -> {new}" for key, (old, new) in changed.items()))
        else:
            with _restoring(path, "scheduler"):
                self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and "scaler" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        resumed = resolve_checkpoint_path(path)
        self.last_saved = (resumed, self.start_epoch - 1)
        if self.info.is_main and self.folder is not None and resumed.parent.resolve() == self.out.resolve():
            reconcile(checkpoint, resumed, say=lambda message: _say(self.info, message))
        if self.start_epoch >= self.config["epochs"]:
            raise SarvitError(
                f"--resume {path}: that run has finished {self.start_epoch} epochs and --epochs is "
                f"{self.config['epochs']}, so there is nothing to train; pass --epochs N with N > "
                f"{self.start_epoch} to extend it, or use `sarvit eval --weights {path}`")
        self.global_step = int(checkpoint["global_step"])
        self.best_top1, self.best_epoch = float(checkpoint["best_top1"]), int(checkpoint["best_epoch"])
        self.history = list(checkpoint.get("history", []))
        states = checkpoint["rng"]
        with _restoring(path, "random-number state"):
            set_rng_state(states[self.info.rank] if len(states) == self.info.world_size else states[0])
        _say(self.info, f"resuming {path}: {self.start_epoch} of {self.config['epochs']} epochs done")
        return checkpoint.get("model_ema")

    def claim_outputs(self) -> None:
        """Lock the output folder (rank 0) before any data is loaded: :class:`sarvit.checkpoints.RunFolder`."""
        config = self.config
        out = Path(config["output_dir"]) if config.get("output_dir") else default_output_dir(config)
        out = Path(os.path.abspath(out.expanduser()))  # stored absolute: a resume from elsewhere finds it
        self.out = Path(broadcast_object(str(out), self.info))
        config["output_dir"] = str(self.out)
        refused = None
        if self.info.is_main:
            try:
                self.folder = RunFolder.claim(self.out, resume=config.get("resume"), overwrite=config["overwrite"],
                                              say=lambda message: _say(self.info, message))
            except SarvitError as error:
                refused = str(error)
        refused = broadcast_object(refused, self.info)
        if refused:
            raise SarvitError(refused)

    def release_outputs(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.folder is not None:
            self.folder.release()

    def open_outputs(self) -> None:
        config = self.config
        if self.info.is_main:
            save_config(config, self.out / "config.yaml")
            self.log = RunLog(self.out, self.history, tensorboard=config["tensorboard"])
            self.pictures = AttentionPictures(self.val_loader.dataset, self.out, writer=self.log.writer)
        # the pictures are of the [CLS] query's attention: a model without one (ARViT) has none to draw
        self.picture_epochs = (picture_epochs(config["epochs"], config.get("attention_every"))
                               if has_class_token(self.model) else set())

    def _checkpoint(self, epoch: int, line: dict) -> dict:
        states = rng_state()
        if self.info.distributed:
            gathered: list = [None] * self.info.world_size
            dist.all_gather_object(gathered, states)
            states = gathered
        else:
            states = [states]
        extra = {}
        if self.scaler is not None:
            extra["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            extra["model_ema"] = self.ema.module.state_dict()
        regularizers = self.regularized.regularizers.state_dict()
        if regularizers:  # the terms' own weights (DRLoc's head), beside the model's
            extra["regularizers"] = regularizers
        return checkpoint_content(
            self.model.state_dict(), self.spec, optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), epoch=epoch, global_step=self.global_step,
            best_top1=self.best_top1, best_epoch=self.best_epoch, metrics=line, history=self.history + [line],
            rng=states, config=dict(self.config), **extra)

    def fit(self) -> None:
        config, info = self.config, self.info
        train_images = len(self.train_loader.sampler) * info.world_size
        _say(info, f"training {config['model']} ({_architecture_words(self.model)}) at {config['input_size']} px "
                   f"(SAR: {_sar_words(config)}; loss terms: {self.regularized.describe() or 'none'}) on "
                   f"{config['data_set']}: {train_images} images/epoch, {config['epochs']} epochs, batch "
                   f"{config['batch_size']} x {info.world_size} process(es) on {info.device.type}, lr {self.lr:.2e}; "
                   f"output {self.out}")
        for epoch in range(self.start_epoch, config["epochs"]):
            self.train_loader.sampler.set_epoch(epoch)
            progress = _progress(info, len(self.train_loader), epoch, config["epochs"])
            if epoch == self.start_epoch and info.is_main:
                progress = Pace(progress, steps_per_epoch=len(self.train_loader),
                                epochs=config["epochs"] - self.start_epoch, train_images=train_images,
                                val_images=len(self.val_loader.dataset), say=_write)
            try:
                train_metrics, self.global_step = train_one_epoch(
                    self.ddp, self.criterion, self.train_loader, self.optimizer, self.scheduler, self.settings, info,
                    epoch=epoch, global_step=self.global_step, mixup=self.mixup, scaler=self.scaler, ema=self.ema,
                    progress=progress, skipped_in_a_row=self.skipped_in_a_row)
            except NonFiniteLoss as error:
                advice = ("lower --lr or set --clip-grad" if self.settings.skip_nonfinite else
                          "rerun with --skip-nonfinite to skip such steps (or lower --lr, set --clip-grad)")
                raise SarvitError(f"{error}; {self._kept()}; {advice}") from None
            finally:
                if progress is not None:
                    progress.close()
            self.skipped_in_a_row = train_metrics.pop("skipped_in_a_row")
            self._end_epoch(epoch, train_metrics)

    def _kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint had been written yet, so none is kept"
        path, epoch = self.last_saved
        return f"the last good checkpoint is kept at {path} (epoch {epoch + 1})"

    def _check_finite(self, epoch: int, val_loss: float) -> None:
        """Nothing damaged is written: the weights (and EMA weights) and the validation loss must be finite."""
        damaged = nonfinite_weights({"weights": self.model, **({"EMA weights": self.ema.module} if self.ema else {})})
        if damaged or not math.isfinite(val_loss):
            what = (f"the model's {' and '.join(damaged)} hold NaN or inf values" if damaged else
                    f"the validation loss is {val_loss}")
            raise SarvitError(f"after epoch {epoch + 1} {what}, so no checkpoint of it was written; {self._kept()}; "
                              "lower --lr or set --clip-grad")

    def _end_epoch(self, epoch: int, train_metrics: dict) -> None:
        val = evaluate(self.model, self.val_loader, self.info, self.amp, self.jaccard)
        line = {"epoch": epoch, **{f"train_{k}": v for k, v in train_metrics.items() if k not in ("lr", "img_per_s")},
                "lr": train_metrics["lr"], "img_per_s": train_metrics["img_per_s"],
                **{f"val_{k}": v for k, v in val.items() if k != "images"}}
        if self.ema is not None:
            line["val_ema_top1"] = evaluate(self.ema.module, self.val_loader, self.info, self.amp)["top1"]
        self._check_finite(epoch, val["loss"])
        improved = val["top1"] > self.best_top1
        if improved:
            self.best_top1, self.best_epoch = val["top1"], epoch
        content = self._checkpoint(epoch, line)
        if self.info.is_main:  # the order sarvit.checkpoints.reconcile repairs after a crash
            self.last_saved = (save_atomic(content, self.out / "last.pth"), epoch)
            if improved:
                save_atomic(content, self.out / "best.pth")
            self.log.add(line)
            if epoch in self.picture_epochs:
                self.pictures.draw(self.model, epoch)
        self.history.append(line)
        barrier(self.info)
        jaccard = f", attention Jaccard {val['jaccard']:.1f}%" if "jaccard" in val else ""
        loss = "n/a (every step skipped)" if line["train_loss"] is None else f"{line['train_loss']:.4f}"
        skipped = f", {line['train_skipped_steps']} step(s) skipped" if line["train_skipped_steps"] else ""
        terms = "".join(f", {term.name} {line['train_' + log_key(term.name)]:.4f}" for term in self.regularized.terms
                        if line["train_" + log_key(term.name)] is not None)
        ema = f" (EMA {line['val_ema_top1']:.2f}%)" if "val_ema_top1" in line else ""
        train_top1 = "" if line["train_top1"] is None else f", train top-1 {line['train_top1']:.2f}%"
        _say(self.info, f"epoch {epoch + 1}/{self.config['epochs']}: loss {loss}{terms}{skipped}{train_top1}, "
                        f"val top-1 {val['top1']:.2f}%{ema}{top5_words(val['top5'], self.num_classes)}{jaccard}, "
                        f"{line['img_per_s']:.0f} img/s")

    def finish(self) -> TrainResult:
        result = TrainResult(model=self.model, history=self.history, best_top1=self.best_top1,
                             best_epoch=self.best_epoch, output_dir=self.out,
                             regularizers=self.regularized.regularizers)
        if self.info.is_main:
            self.log.close()
            paths = {"config": self.out / "config.yaml", "log": self.out / "log.jsonl"}
            for name in ("last", "best"):
                if (self.out / f"{name}.pth").is_file():
                    paths[name] = self.out / f"{name}.pth"
            if self.config["tensorboard"] and (self.out / "tensorboard").is_dir():
                paths["tensorboard"] = self.out / "tensorboard"
            curves = plot_curves(self.history, self.out / "curves.png")
            if curves is not None:
                paths["curves"] = curves
            if self.pictures.written:
                paths["attention"] = self.pictures.written
            result.paths = paths
        return result


def top5_words(top5: float, num_classes: int, sep: str = "") -> str:
    """`` top-5 xx.xx%`` where it tells something: with five classes or fewer top-5 is always 100 %."""
    return f"{sep} top-5 {top5:.2f}%" if num_classes > 5 else ""


@contextlib.contextmanager
def _restoring(path: str, what: str):
    """A resumed checkpoint's ``what`` that torch or Python cannot restore is one line naming it."""
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError) as error:
        raise SarvitError(f"--resume {path}: the checkpoint's {what} cannot be restored ({type(error).__name__}: "
                          f"{str(error)[:120]}); resume an undamaged checkpoint, or start from these weights with "
                          "--finetune") from None


def _sar_words(config: dict) -> str:
    parts = []
    if config["sar_loss"] and config["lam"] > 0:
        parts.append(f"loss lambda={config['lam']}")
    if config["remove_last_skip"]:
        parts.append("no last skip")
    if config["remove_last_norm"]:
        parts.append("no last LN")
    return ", ".join(parts) if parts else "off"


def _architecture_words(model: torch.nn.Module) -> str:
    grid = "x".join(str(side) for side in model.patch_embed.grid_size)
    return (f"{len(model.blocks)} blocks, width {model.embed_dim}, {model.blocks[0].attn.num_heads} heads, "
            f"{grid} patches, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters")


def _write(message: str) -> None:
    """A line between progress-bar updates."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def _progress(info: DistInfo, total: int, epoch: int, epochs: int):
    if not info.is_main:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="step", leave=False, file=sys.stderr,
                dynamic_ncols=True, disable=None)


def train(config: dict[str, Any]) -> TrainResult:
    """Train as ``config`` (a dict from :func:`sarvit.train.config.resolve_config`) says.

    Works under ``torchrun`` (DistributedDataParallel; rank 0 writes). Returns the trained model
    and its history; raises :class:`SarvitError` for user-facing failures.
    """
    info = setup_distributed(config.get("device"))
    with _cpu_threads(config, info):
        run = _Run(dict(config), info)
        run.claim_outputs()
        try:
            run.setup()
            run.open_outputs()
            run.fit()
            return run.finish()
        finally:
            run.release_outputs()


@contextlib.contextmanager
def _cpu_threads(config: dict[str, Any], info: DistInfo):
    """On a CPU device, leave the data workers their cores for the run (restored afterwards)."""
    before = torch.get_num_threads()
    if info.device.type == "cpu":
        torch.set_num_threads(build.cpu_threads(config, info))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _attention_jaccard(dataset, model: torch.nn.Module) -> Optional[AttentionJaccard]:
    """The attention Jaccard metric when the evaluation set has masks (the synthetic set does) and the model a
    [CLS] query whose attention it scores (ARViT has none)."""
    if isinstance(dataset, MaskedDataset) and has_class_token(model):
        return AttentionJaccard(model.blocks[-1].attn.num_heads)
    return None


def evaluate_checkpoint(config: dict[str, Any], checkpoint: Optional[dict] = None) -> dict:
    """Evaluate ``config["weights"]`` on the data set's evaluation split: ``{top1, top5, loss, entropy, images}``.

    A sarvit checkpoint rebuilds its own model; plain weights use the model options of ``config``.
    """
    info = setup_distributed(config.get("device"))
    path = config.get("weights")
    if not path:
        raise SarvitError("nothing to evaluate: give the checkpoint with --weights CKPT")
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path)
    spec = stored_spec(checkpoint)
    if spec is not None:
        config = {**config, "input_size": spec.input_size}
    _, val_set, num_classes = build.build_datasets(config, train=False)
    if spec is None:
        spec = build.model_spec(config, num_classes)
    elif spec.num_classes != num_classes:
        raise SarvitError(
            f"{path} classifies {spec.num_classes} classes, the {config['data_set']} evaluation set has "
            f"{num_classes}; evaluate on the data set it was trained on (or fine-tune it with --finetune)")
    if config.get("use_ema") and "model_ema" not in checkpoint:
        raise SarvitError(f"--ema: {path} holds no EMA weights (the run had --no-model-ema)")
    try:
        model, report = model_from_checkpoint(checkpoint, spec, weights="model_ema" if config.get("use_ema") else "model")
    except SarvitError as error:
        raise SarvitError(f"{path}: {error}") from None
    if report.removed_by_surgery:
        _say(info, f"note: {report}; pass --no-sar (or --keep-last-norm) if this model was trained without SAR")
    model.to(info.device)
    loader = build.eval_loader(val_set, config, info)
    with _cpu_threads(config, info):
        metrics = evaluate(model, loader, info, build.amp_dtype(config, info.device), _attention_jaccard(val_set, model))
    metrics.update({"checkpoint": str(path), "data_set": config["data_set"], "model": spec.name,
                    "num_classes": num_classes,
                    "sar": sar_config(model)})
    if info.is_main and config.get("json"):
        write_json(metrics, config["json"])
    return metrics
