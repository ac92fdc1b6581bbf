"""A whole run: :func:`train` (fit, evaluate each epoch, checkpoint, log).

:func:`evaluate_checkpoint` and :func:`evaluation_setup` live in :mod:`.checkpoint_eval` (re-exported here).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
import torch.distributed as dist
from timm.utils import ModelEmaV3, random_seed
from torch.nn.parallel import DistributedDataParallel

from ..checkpoints import RunFolder, checkpoint_content, reconcile, save_atomic
from ..errors import SarvitError
from ..models import has_class_token
from ..models.pyramids import PYRAMIDS, pyramid_spec_kwargs
from . import build
from .checkpoint_eval import evaluate_checkpoint, evaluation_setup  # re-exported: sarvit.train.runner's names
from .config import TrainConfig, save_config
from .distributed import DistInfo, barrier, claim_run_folder, say, setup_distributed
from .diagnostics import TrainingProbe, stall_warning
from .evaluation import attention_jaccard
from .loss_gate import LossGate
from .loop import LoopState, NonFiniteLoss, Optimization, StepSettings, evaluate, nonfinite_weights, train_one_epoch
from .pace import Pace, progress_bar, write_line
from .pictures import AttentionPictures, picture_epochs
from .records import RunLog, plot_curves
from .regularizers import RegularizedModel, log_key
from .rng import rng_state
from .starts import load_finetune, load_start_weights, read_resume, restore_schedule

__all__ = ["TrainResult", "train", "evaluate_checkpoint", "evaluation_setup", "default_output_dir"]


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


def default_output_dir(config: TrainConfig) -> Path:
    return Path("output") / f"{config.data_set}-{time.strftime('%Y%m%d-%H%M%S')}"


class _Run:
    """The state of one training run; methods are the phases of :func:`train`.

    ``task`` is the :class:`~sarvit.train.tasks.TrainingTask` (it owns the model and its regularizers); ``step``
    is what the optimizer steps through: the task, DDP-wrapped when distributed and compiled with ``--compile``.
    """

    def __init__(self, config: TrainConfig, info: DistInfo) -> None:
        self.config, self.info = config, info
        self.state = LoopState()
        self.best_top1, self.best_epoch = -1.0, -1
        self.history: list[dict] = []
        self.out: Optional[Path] = None
        self.folder: Optional[RunFolder] = None
        self.log: Optional[RunLog] = None
        self.last_saved: Optional[tuple[Path, int]] = None   # the newest good checkpoint and its epoch

    def setup(self) -> None:
        config, info = self.config, self.info
        highest = 2 ** 32 - info.world_size  # timm seeds process `rank` with seed + rank; numpy takes 32 bits
        if not 0 <= config.seed <= highest:
            raise SarvitError(f"--seed {config.seed}: expected an integer from 0 to "
                              f"{'2**32 - 1' if info.world_size == 1 else highest}")
        random_seed(config.seed, info.rank)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        download_first = bool(config.download) and info.distributed  # rank 0 downloads, the others wait
        if download_first and not info.is_main:
            barrier(info)
        resident = build.resident_loaders(config, info)  # None: the DataLoader path
        if resident is None:
            train_set, val_set, num_classes = build.build_datasets(config)
        if download_first and info.is_main:
            barrier(info)
        if resident is None:
            self.train_loader = build.train_loader(train_set, config, info)
            self.val_loader = build.eval_loader(val_set, config, info)
        else:
            self.train_loader, self.val_loader, num_classes = resident
            train_set, val_set = self.train_loader.dataset, self.val_loader.dataset
        self.spec = build.model_spec(config, num_classes)
        self.model = self.spec.build().to(info.device)
        # the model and its regularizers' modules (DRLoc's head) train, synchronise and checkpoint together
        self.regularized = RegularizedModel(self.model, config.regularizers).to(info.device)
        self.task = build.build_task(config, self.regularized, num_classes).to(info.device)
        self.jaccard = attention_jaccard(val_set, self.model)
        build.check_input_fits(self.model, {"training": train_set, "validation": val_set}, config)
        self.lr = build.scaled_lr(config, info.world_size)
        self.amp = build.amp_dtype(config, info.device)
        optimizer = build.build_optimizer(self.task, config, self.lr)
        self.optimization = Optimization(
            optimizer, build.build_scheduler(optimizer, config, len(self.train_loader)),
            scaler=torch.amp.GradScaler(info.device.type) if self.amp == torch.float16 else None)
        if config.finetune:
            say(info, f"fine-tuning from {config.finetune}: {load_finetune(self.model, config.finetune)}")
        if config.weights:
            say(info, f"starting from the weights in {config.weights}: "
                       f"{load_start_weights(self.model, config.weights)}")
        ema_state = self._resume(config.resume) if config.resume else None
        if config.model_ema:  # a copy of the weights as loaded, or the resumed run's own average
            self.optimization.ema = ModelEmaV3(self.task.evaluation_model(), decay=config.model_ema_decay,
                                               use_warmup=bool(config.model_ema_warmup))
            if ema_state is not None:
                self.optimization.ema.module.load_state_dict(ema_state)
        terms = self.regularized.terms
        self.settings = StepSettings(reg_names=tuple(t.name for t in terms), reg_weights=tuple(t.weight for t in terms),
                                     clip_grad=config.clip_grad, skip_nonfinite=bool(config.skip_nonfinite),
                                     max_skipped=int(config.max_skipped_steps),
                                     log_interval=max(1, int(config.log_interval)), amp_dtype=self.amp,
                                     total_steps=config.epochs * len(self.train_loader))
        # a compiled step's graph is not differentiated twice: the probe runs on eager steps only
        self.probe = (TrainingProbe(self.model, [p for p in self.task.parameters() if p.requires_grad],
                                    self.settings.reg_names, every=self.settings.log_interval,
                                    report_initial=self.state.epoch == 0)
                      if config.diagnostics and not config.compile else None)
        gated = [term.name == "spatial-entropy" for term in terms]  # why: sarvit.train.loss_gate
        self.gate = (LossGate(gated, num_classes, config.sar_loss_gate, info.device)
                     if any(gated) and config.sar_loss_gate else None)
        if self.gate is not None and getattr(self, "gate_state", None):
            self.gate.load_state_dict(self.gate_state)
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        step = DistributedDataParallel(self.task, device_ids=device_ids) if info.distributed else self.task
        self.step = build.compile_step(step, config) if config.compile else step

    def _resume(self, path: str) -> Optional[dict]:
        """Continue from ``path``: weights, optimizer, schedule, progress; returns its EMA weights (or None)."""
        info = self.info
        resumed = read_resume(path, self.spec, self.regularized, self.config.epochs, info.rank, info.world_size)
        self.gate_state = None if resumed.plain else resumed.checkpoint.get("loss_gate")
        if resumed.plain:
            say(info, f"starting from the weights in {path}: {resumed.report}")
            return None
        note = restore_schedule(resumed, self.config, self.optimization, self.lr,
                                lambda: build.build_scheduler(self.optimization.optimizer, self.config,
                                                              len(self.train_loader)))
        if note:
            say(info, note)
        self.state = LoopState(resumed.start_epoch, resumed.global_step)
        self.best_top1, self.best_epoch, self.history = resumed.best_top1, resumed.best_epoch, resumed.history
        self.last_saved = (resumed.path, resumed.start_epoch - 1)
        if info.is_main and self.folder is not None and resumed.path.parent.resolve() == self.out.resolve():
            reconcile(resumed.checkpoint, resumed.path, say=lambda message: say(info, message))
        say(info, f"resuming {path}: {resumed.start_epoch} of {self.config.epochs} epochs done")
        return resumed.ema_state

    def claim_outputs(self) -> None:
        """Lock the output folder (rank 0) before any data is loaded: :class:`sarvit.checkpoints.RunFolder`."""
        config = self.config
        out = Path(config["output_dir"]) if config.get("output_dir") else default_output_dir(config)
        self.out, self.folder = claim_run_folder(out, self.info, resume=config.get("resume"),
                                                 overwrite=config["overwrite"])
        self.config = config.replace(output_dir=str(self.out))

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
        optimization = self.optimization
        if optimization.scaler is not None:
            extra["scaler"] = optimization.scaler.state_dict()
        if optimization.ema is not None:
            extra["model_ema"] = optimization.ema.module.state_dict()
        if self.gate is not None:
            extra["loss_gate"] = self.gate.state_dict()
        regularizers = self.regularized.regularizers.state_dict()
        if regularizers:  # the terms' own weights (DRLoc's head), beside the model's
            extra["regularizers"] = regularizers
        return checkpoint_content(
            self.model.state_dict(), self.spec, optimizer=optimization.optimizer.state_dict(),
            scheduler=optimization.scheduler.state_dict(), epoch=epoch, global_step=self.state.global_step,
            best_top1=self.best_top1, best_epoch=self.best_epoch, metrics=line, history=self.history + [line],
            rng=states, config=self.config.to_dict(), **extra)

    def fit(self) -> None:
        config, info = self.config, self.info
        train_images = len(self.train_loader.sampler) * info.world_size
        say(info, f"training {config['model']} ({_architecture_words(self.model)}) at {config['input_size']} px "
                   f"(SAR: {_sar_words(config)}; loss terms: {self.regularized.describe() or 'none'}) on "
                   f"{config['data_set']}: {train_images} images/epoch, {config['epochs']} epochs, batch "
                   f"{config['batch_size']} x {info.world_size} process(es) on {info.device.type}, lr {self.lr:.2e}; "
                   f"output {self.out}")
        first = self.state.epoch
        for epoch in range(first, config.epochs):
            self.train_loader.sampler.set_epoch(epoch)
            self.state.epoch = epoch
            progress = progress_bar(info.is_main, len(self.train_loader), epoch, config.epochs)
            if epoch == first and info.is_main:
                progress = Pace(progress, steps_per_epoch=len(self.train_loader), epochs=config.epochs - first,
                                train_images=train_images, val_images=len(self.val_loader.dataset), say=write_line)
            try:
                train_metrics = train_one_epoch(self.step, self.train_loader, self.optimization, self.state,
                                                self.settings, info, progress, probe=self.probe, gate=self.gate)
            except NonFiniteLoss as error:
                advice = ("lower --lr or set --clip-grad" if self.settings.skip_nonfinite else
                          "rerun with --skip-nonfinite to skip such steps (or lower --lr, set --clip-grad)")
                raise SarvitError(f"{error}; {self._kept()}; {advice}") from None
            finally:
                if progress is not None:
                    progress.close()
            self._end_epoch(epoch, train_metrics)

    def _kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint had been written yet, so none is kept"
        path, epoch = self.last_saved
        return f"the last good checkpoint is kept at {path} (epoch {epoch + 1})"

    def _check_finite(self, epoch: int, val_loss: float) -> None:
        """Nothing damaged is written: the weights (and EMA weights) and the validation loss must be finite."""
        ema = self.optimization.ema
        damaged = nonfinite_weights({"weights": self.model, **({"EMA weights": ema.module} if ema else {})})
        if damaged or not math.isfinite(val_loss):
            what = (f"the model's {' and '.join(damaged)} hold NaN or inf values" if damaged else
                    f"the validation loss is {val_loss}")
            raise SarvitError(f"after epoch {epoch + 1} {what}, so no checkpoint of it was written; {self._kept()}; "
                              "lower --lr or set --clip-grad")

    def _end_epoch(self, epoch: int, train_metrics: dict) -> None:
        val = evaluate(self.task.evaluation_model(), self.val_loader, self.info, self.amp, self.jaccard)
        line = {"epoch": epoch, **{f"train_{k}": v for k, v in train_metrics.items() if k not in ("lr", "img_per_s")},
                "lr": train_metrics["lr"], "img_per_s": train_metrics["img_per_s"],
                **{f"val_{k}": v for k, v in val.items() if k != "images"}}
        if self.optimization.ema is not None:
            line["val_ema_top1"] = evaluate(self.optimization.ema.module, self.val_loader, self.info, self.amp)["top1"]
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
        stalled = stall_warning(self.history, self.config.epochs)
        if stalled:
            say(self.info, stalled)
        jaccard = f", attention Jaccard {val['jaccard']:.1f}%" if "jaccard" in val else ""
        loss = "n/a (every step skipped)" if line["train_loss"] is None else f"{line['train_loss']:.4f}"
        skipped = f", {line['train_skipped_steps']} step(s) skipped" if line["train_skipped_steps"] else ""
        terms = "".join(f", {term.name} {line['train_' + log_key(term.name)]:.4f}" for term in self.regularized.terms
                        if line["train_" + log_key(term.name)] is not None)
        ema = f" (EMA {line['val_ema_top1']:.2f}%)" if "val_ema_top1" in line else ""
        top5 = "" if val["top5"] is None else f" top-5 {val['top5']:.2f}%"
        train_top1 = "" if line["train_top1"] is None else f", train top-1 {line['train_top1']:.2f}%"
        say(self.info, f"epoch {epoch + 1}/{self.config['epochs']}: loss {loss}{terms}{skipped}{train_top1}, "
                        f"val top-1 {val['top1']:.2f}%{ema}{top5}{jaccard}, "
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
    parameters = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters"
    if isinstance(model, PYRAMIDS):  # per stage; S is read from the last one
        build = pyramid_spec_kwargs(model)
        widths = build.get("embed_dims") or tuple(build["embed_dim"] * 2 ** i for i in range(len(build["depths"])))
        return (f"{len(build['depths'])} stages of {'/'.join(map(str, build['depths']))} blocks, widths "
                f"{'/'.join(map(str, widths))}, {'/'.join(map(str, build['num_heads']))} heads, {parameters}")
    grid = "x".join(str(side) for side in model.patch_embed.grid_size)
    return (f"{len(model.blocks)} blocks, width {model.embed_dim}, {model.blocks[0].attn.num_heads} heads, "
            f"{grid} patches, {parameters}")


def train(config: TrainConfig) -> TrainResult:
    """Train as ``config`` (a :class:`~sarvit.train.config.TrainConfig` from
    :func:`~sarvit.train.config.resolve_config`) says.

    Works under ``torchrun`` (DistributedDataParallel; rank 0 writes). Returns the trained model
    and its history; raises :class:`SarvitError` for user-facing failures.
    """
    info = setup_distributed(config.device)
    with build.cpu_thread_limit(config, info):
        run = _Run(config, info)
        run.claim_outputs()
        try:
            run.setup()
            run.open_outputs()
            run.fit()
            return run.finish()
        finally:
            run.release_outputs()
