"""A self-supervised run: :func:`pretrain` builds the task (DINO or MoCo-v3 around a regularized ViT), trains
it epoch by epoch, scores the evaluation network's features by k-NN, and checkpoints everything a resume needs.

Each epoch is :func:`sarvit.train.loop.train_one_epoch`, the supervised runs' loop: ``out = task(batch)``;
``loss = out.loss + (weights * out.terms).sum()``; backward, clip, step; ``task.after_step`` (the teacher /
momentum encoder's EMA); the per-step schedules (learning rate and DINO's weight decay, one
:class:`~.schedules.CosineWeightDecay`). Nothing reads the device until a log point.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import yaml
from timm.utils import random_seed
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ...checkpoints import RunFolder, checkpoint_content, load_checkpoint, save_atomic, write_text
from ...data import build_dataset, build_mask_dataset, build_transform
from ...errors import SarvitError
from ...losses import spatial_entropy
from ...metrics import AttentionJaccard, knn_scores, topk_accuracy
from ...models import ModelSpec
from .. import build
from ..distributed import DistInfo, barrier, claim_run_folder, say, setup_distributed
from ..evaluation import batches
from ..loop import LoopState, Optimization, StepSettings, train_one_epoch
from ..records import RunLog
from ..regularizers import RegularizedModel
from ..rng import rng_state, set_rng_state
from .dino import DINOTask
from .features import PROBE_EPOCHS, extract_features, train_linear_classifier
from .mocov3 import MoCoV3Task
from .multicrop import MultiCrop
from .schedules import CosineWeightDecay
from ..tasks import TrainingTask

__all__ = ["PretrainResult", "pretrain", "build_task", "pretrain_views", "knn_eval_sets", "knn_of", "probe_of",
           "attention_scores"]

# the loop's epoch figures that a pretraining log leaves out: duplicates, a supervised accuracy (None here), and
# figures that differ between runs (the speed) or are always 0 (no step is skipped)
_UNLOGGED = ("entropy", "top1", "lr", "img_per_s", "skipped_steps")


@dataclass
class PretrainResult:
    task: TrainingTask
    history: list[dict] = field(default_factory=list)
    output_dir: Optional[Path] = None
    knn_at_init: Optional[dict] = None


def _spec(config: dict[str, Any]) -> ModelSpec:
    """The backbone: a ViT with no classifier (its forward gives the [CLS] features); DINO's takes any crop size."""
    kwargs = {"img_size": config["input_size"], "num_classes": 0, "drop_path_rate": config["drop_path"],
              **{key: config[key] for key in ("patch_size", "depth", "embed_dim", "num_heads") if config.get(key)}}
    if config["method"] == "dino":
        kwargs["dynamic_img_size"] = True
    if config["weight_init"] != "timm":  # timm's other initialisations (MoCo-v3's: "moco")
        kwargs["weight_init"] = config["weight_init"]
    sar = {"remove_last_skip": config["remove_last_skip"], "remove_last_norm": config["remove_last_norm"]}
    return ModelSpec(config["model"], sar, kwargs)


def build_task(config: dict[str, Any], steps_per_epoch: int) -> tuple[TrainingTask, ModelSpec]:
    """The task of ``config["method"]`` around a fresh backbone, and the spec of its evaluation network."""
    spec = _spec(config)
    model = RegularizedModel(spec.build(), config["regularizers"])
    common = {"steps_per_epoch": steps_per_epoch, "epochs": config["epochs"]}
    if config["method"] == "dino":
        task = DINOTask(model, **common, out_dim=config["out_dim"], hidden_dim=config["hidden_dim"],
                        bottleneck_dim=config["bottleneck_dim"], norm_last_layer=bool(config["norm_last_layer"]),
                        freeze_last_layer=config["freeze_last_layer"], momentum_teacher=config["momentum_teacher"],
                        teacher_temp=config["teacher_temp"], warmup_teacher_temp=config["warmup_teacher_temp"],
                        warmup_teacher_temp_epochs=config["warmup_teacher_temp_epochs"])
    else:
        task = MoCoV3Task(model, **common, dim=config["moco_dim"], mlp_dim=config["moco_mlp_dim"],
                          tau=config["moco_t"], momentum=config["moco_m"])
    return task, spec.replace(drop_path_rate=None)


def pretrain_views(config: dict[str, Any]) -> MultiCrop:
    """The multi-crop views `sarvit pretrain` trains on: the global crops, then the local ones."""
    return MultiCrop(config["input_size"], config.get("local_size") or config["input_size"],
                     config["local_crops_number"], config["global_crops_scale"],
                     config.get("local_crops_scale") or (0.05, 0.4))


def knn_eval_sets(config: dict[str, Any]):
    """The training and evaluation splits without augmentation, for the k-NN score of the features."""
    transform = build_transform(False, config["input_size"])
    synthetic = {"img_size": config["input_size"]} if config["data_set"] == "synthetic" else {}
    common = dict(root=config.get("data_path"), download=bool(config.get("download")), transform=transform)
    count = config.get("num_samples")
    bank, _ = build_dataset(config["data_set"], train=True, **common, **synthetic,
                            **({"num_samples": count} if count else {}))
    queries, num_classes = build_dataset(config["data_set"], train=False, **common, **synthetic,
                                         **({"num_samples": max(1, count // 5)} if count else {}))
    return bank, queries, num_classes


def knn_of(model: nn.Module, bank_loader, query_loader, num_classes: int, device: torch.device, k: int = 20,
           temperature: float = 0.07) -> dict[str, float]:
    """k-NN top-1/top-5 (%) of ``model``'s [CLS] features: the training split votes for the evaluation split."""
    bank, bank_labels = extract_features(model, bank_loader, device)
    queries, labels = extract_features(model, query_loader, device)
    return topk_accuracy(knn_scores(bank, bank_labels, queries, num_classes, min(k, len(bank)), temperature), labels)


def probe_of(model: nn.Module, bank_loader, query_loader, num_classes: int, device: torch.device, *, lr: float,
             batch_size: int, seed: int = 0, epochs: int = PROBE_EPOCHS) -> dict[str, float]:
    """Linear-probe top-1/top-5 (%) of ``model``'s [CLS] features (last block; the `sarvit linear-probe` defaults
    otherwise): a classifier trained on the training split, scored on the evaluation split."""
    bank, bank_labels = extract_features(model, bank_loader, device)
    queries, labels = extract_features(model, query_loader, device)
    classifier = train_linear_classifier(bank, bank_labels, num_classes, epochs=epochs, lr=lr, batch_size=batch_size,
                                         seed=seed)
    with torch.no_grad():
        return topk_accuracy(classifier(queries), labels)


@torch.no_grad()
def attention_scores(model: nn.Module, loader, device: torch.device) -> dict[str, float]:
    """``{"jaccard": %, "entropy": mean spatial entropy}`` of ``model``'s last-block [CLS] attention over a data set
    with masks (``(image, target, foreground, valid)`` items), as `sarvit segment-eval` / `analyze` score it."""
    was_training = model.training
    model.eval()
    metric = AttentionJaccard(model.blocks[-1].attn.num_heads).to(device)
    entropy = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    for images, _, foreground, valid in batches(loader):
        _, maps, attention = model(images.to(device), return_maps=True, return_attention=True)
        metric.update(attention.float(), foreground.to(device), valid.to(device))
        entropy += spatial_entropy(maps.float(), check_finite=False).mean(dim=1).sum().double()
        count += images.shape[0]
    model.train(was_training)
    return {"jaccard": 100.0 * float(metric.compute()["jaccard"]), "entropy": float(entropy) / max(1, count)}


class _Pretraining:
    """The state of one run; methods are the phases of :func:`pretrain`."""

    def __init__(self, config: dict[str, Any], info: DistInfo) -> None:
        self.config, self.info = config, info
        self.start_epoch, self.global_step, self.history = 0, 0, []
        self.folder: Optional[RunFolder] = None
        self.log: Optional[RunLog] = None

    def claim(self) -> None:
        config = self.config
        out = config.get("output_dir") or f"output/pretrain-{config['method']}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.out, self.folder = claim_run_folder(out, self.info, resume=config.get("resume"),
                                                 overwrite=config["overwrite"])
        config["output_dir"] = str(self.out)

    def setup(self) -> None:
        config, info = self.config, self.info
        random_seed(config["seed"], info.rank)
        synthetic = {"img_size": config["input_size"]} if config["data_set"] == "synthetic" else {}
        count = {"num_samples": config["num_samples"]} if config.get("num_samples") else {}
        train_set, _ = build_dataset(config["data_set"], train=True, transform=pretrain_views(config),
                                     root=config.get("data_path"), download=bool(config.get("download")),
                                     **synthetic, **count)
        loader_config = {**config, "repeated_aug": False, "pin_mem": True}
        self.loader = build.train_loader(train_set, loader_config, info)
        bank, queries, self.num_classes = knn_eval_sets(config)
        # every process scores the whole sets (k-NN needs every training feature): unsharded loaders
        whole = DistInfo(device=info.device)
        self.bank_loader, self.query_loader = (build.eval_loader(s, loader_config, whole) for s in (bank, queries))
        self.mask_loader = None
        if config["data_set"] == "synthetic":  # the objects' masks: the attention Jaccard of every epoch
            masks, _ = build_mask_dataset("synthetic", img_size=config["input_size"],
                                          **({"num_samples": max(1, count["num_samples"] // 5)} if count else {}))
            self.mask_loader = build.eval_loader(masks, loader_config, whole)
        self.total_steps = config["epochs"] * len(self.loader)
        self.task, self.spec = build_task(config, len(self.loader))
        self.task.to(info.device)
        self.lr = config["lr"] * config["batch_size"] * info.world_size / 256.0
        schedule = {**config, "sched": "cosine", "warmup_lr": 0.0, "decay_epochs": 30, "decay_rate": 0.1,
                    "opt": "adamw", "momentum": 0.9, "opt_eps": 1e-8}
        self.optimizer = build.build_optimizer(self.task, schedule, self.lr)
        # DINO: weight decay cosine from --weight-decay to --weight-decay-end per step (MoCo-v3: both 0.1)
        self.scheduler = CosineWeightDecay(build.build_scheduler(self.optimizer, schedule, len(self.loader)),
                                           self.optimizer, config["weight_decay"], config["weight_decay_end"],
                                           self.total_steps)
        terms = self.task.model.terms
        self.settings = StepSettings(reg_names=tuple(term.name for term in terms),
                                     reg_weights=tuple(float(term.weight) for term in terms),
                                     clip_grad=config["clip_grad"], log_interval=int(config["log_interval"]),
                                     amp_dtype=build.amp_dtype(config, info.device), total_steps=self.total_steps)
        self.knn_at_init = None
        if config.get("resume"):
            self._resume(config["resume"])
        else:
            self.knn_at_init = self._knn()
        self.step = self.task
        if info.distributed:
            if config["method"] == "mocov3" and info.device.type == "cuda":  # batch statistics of the global batch
                self.step = nn.SyncBatchNorm.convert_sync_batchnorm(self.task)
            ids = [info.device.index] if info.device.type == "cuda" else None
            # DINO's first epoch gives its head's last layer no gradient: parameters unused in some steps
            self.step = DistributedDataParallel(self.step, device_ids=ids, find_unused_parameters=True)

    def _knn(self) -> dict[str, float]:
        return knn_of(self.task.evaluation_model(), self.bank_loader, self.query_loader, self.num_classes,
                      self.info.device)

    def _resume(self, path: str) -> None:
        checkpoint = load_checkpoint(path)
        if "task" not in checkpoint:
            raise SarvitError(f"--resume {path}: not a `sarvit pretrain` checkpoint (it holds no 'task' state)")
        if checkpoint["config"].get("method") != self.config["method"]:
            raise SarvitError(f"--resume {path}: that run pretrained with --method {checkpoint['config'].get('method')}")
        self.task.load_state_dict(checkpoint["task"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.start_epoch, self.global_step = int(checkpoint["epoch"]) + 1, int(checkpoint["global_step"])
        self.history = list(checkpoint["history"])
        self.knn_at_init = checkpoint.get("knn_at_init")
        if self.start_epoch >= self.config["epochs"]:
            raise SarvitError(f"--resume {path}: that run has finished its {self.start_epoch} epochs; pass --epochs N "
                              f"with N > {self.start_epoch} to extend it")
        states = checkpoint["rng"]
        set_rng_state(states[self.info.rank] if len(states) == self.info.world_size else states[0])
        say(self.info, f"resuming {path}: {self.start_epoch} of {self.config['epochs']} epochs done")

    def fit(self) -> None:
        config, info = self.config, self.info
        if info.is_main:
            run = {key: value for key, value in config.items() if key not in ("resume", "overwrite")}
            write_text(yaml.safe_dump(run, sort_keys=True), self.out / "config.yaml")  # the resolved options
            self.log = RunLog(self.out, self.history, tensorboard=False)
        terms = self.task.model.describe() or "none"
        say(info, f"pretraining with {config['method']} ({config['scale']} recipe): {config['model']} "
                   f"({config['weight_init']} initialisation) at {config['input_size']} px, loss terms: {terms}; "
                   f"{len(self.loader.sampler) * info.world_size} "
                   f"images/epoch, {config['epochs']} epochs, batch {config['batch_size']} x {info.world_size}, "
                   f"lr {self.lr:.2e}; output {self.out}")
        if self.knn_at_init is not None and not config.get("resume"):
            say(info, f"k-NN top-1 at initialisation: {self.knn_at_init['top1']:.2f}%")
        for epoch in range(self.start_epoch, config["epochs"]):
            self.loader.sampler.set_epoch(epoch)
            start = time.perf_counter()
            state = LoopState(epoch=epoch, global_step=self.global_step)
            metrics = train_one_epoch(self.step, self.loader, Optimization(self.optimizer, self.scheduler), state,
                                      self.settings, info)
            self.global_step = state.global_step
            metrics["task_loss"] = metrics.pop("ce")  # the self-supervised loss, not a cross-entropy to labels
            knn = self._knn()
            line = {"epoch": epoch, **{f"train_{key}": value for key, value in metrics.items() if key not in _UNLOGGED},
                    "lr": metrics["lr"], "knn_top1": knn["top1"], "knn_top5": knn["top5"],
                    "epoch_s": time.perf_counter() - start}
            if self.knn_at_init is not None:  # the same network before any step: what the grid's gain is paired with
                line["knn_init_top1"] = self.knn_at_init["top1"]
            evaluated = self.task.evaluation_model()
            if self.mask_loader is not None:
                scores = attention_scores(evaluated, self.mask_loader, info.device)
                line.update(val_jaccard=scores["jaccard"], val_entropy=scores["entropy"])
            if epoch + 1 == config["epochs"]:  # the linear probe of the final network
                probe = probe_of(evaluated, self.bank_loader, self.query_loader, self.num_classes, info.device,
                                 lr=config["probe_lr"], batch_size=config["batch_size"], seed=config["seed"])
                line.update(linear_top1=probe["top1"], linear_top5=probe["top5"])
            self._checkpoint(epoch, line)
            extra = "".join(f", {label} {line[key]:.2f}" for key, label in
                            (("val_jaccard", "attention Jaccard %"), ("linear_top1", "linear-probe top-1 %"))
                            if key in line)
            say(info, f"epoch {epoch + 1}/{config['epochs']}: loss {line['train_loss']:.4f}, k-NN top-1 "
                       f"{knn['top1']:.2f}% top-5 {knn['top5']:.2f}%{extra}, {line['epoch_s']:.0f} s")

    def _checkpoint(self, epoch: int, line: dict) -> None:
        states = [rng_state()]
        if self.info.distributed:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, rng_state())
        self.history.append(line)
        content = checkpoint_content(
            self.task.evaluation_model().state_dict(), self.spec, task=self.task.state_dict(),
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(), epoch=epoch,
            global_step=self.global_step, history=list(self.history), rng=states, config=dict(self.config),
            method=self.config["method"], knn_at_init=self.knn_at_init, metrics=line)
        if self.info.is_main:
            save_atomic(content, self.out / "last.pth")
            self.log.add(line)
        barrier(self.info)

    def release(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.folder is not None:
            self.folder.release()


def pretrain(config: dict[str, Any]) -> PretrainResult:
    """Pretrain as ``config`` (from :func:`~sarvit.train.ssl.recipes.resolve_pretrain_config`) says; rank 0 writes
    ``config.yaml``, ``log.jsonl`` and ``last.pth`` into ``config["output_dir"]``."""
    info = setup_distributed(config.get("device"))
    run = _Pretraining(dict(config), info)
    run.claim()
    try:
        run.setup()
        run.fit()
    finally:
        run.release()
    return PretrainResult(run.task, run.history, run.out, run.knn_at_init)
