"""Factories from a resolved config: model, data loaders, and timm's optimizer/scheduler/mixup/loss parts."""
from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Optional

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch.utils.data import DataLoader, DistributedSampler

from ..data import ROTATIONS, build_dataset, build_mask_dataset, build_transform, pretext_dataset
from ..data import gpu_resident
from ..data.checks import check_images
from ..data.transforms import EVAL_CROP_RATIO
from ..errors import SarvitError
from ..models import ModelSpec
from ..models.pyramids import PYRAMIDS, is_pyramid
from .distributed import DistInfo, ShardSampler
from .pyramid_sizes import pyramid_kwargs
from .tasks import RotationTask, SupervisedTask, TrainingTask

__all__ = ["model_spec", "build_datasets", "train_loader", "eval_loader", "build_optimizer",
           "build_scheduler", "build_mixup", "build_criterion", "amp_dtype", "scaled_lr", "cpu_threads",
           "compile_step", "check_input_fits", "build_task", "worker_count", "resident_loaders"]

_ARCH_OVERRIDES = ("patch_size", "depth", "embed_dim", "num_heads")


def model_spec(config: dict[str, Any], num_classes: int) -> ModelSpec:
    """The model a run trains, as the :class:`ModelSpec` every checkpoint stores."""
    timm_kwargs = {"img_size": config["input_size"], "num_classes": num_classes,
                   "drop_rate": config["drop"], "drop_path_rate": config["drop_path"]}
    if is_pyramid(config["model"]):  # per-stage build arguments: the size flags size the last stage
        timm_kwargs.pop("img_size")
        timm_kwargs.update(pyramid_kwargs(config["model"], config))
    else:
        timm_kwargs.update({key: config[key] for key in _ARCH_OVERRIDES if config.get(key) is not None})
    sar = {"remove_last_skip": bool(config["remove_last_skip"]), "remove_last_norm": bool(config["remove_last_norm"]),
           "remove_last_mlp_skip": bool(config["remove_last_mlp_skip"]), "similarity": config["similarity"],
           "query": config.get("query", "cls")}
    return ModelSpec(config["model"], sar, timm_kwargs)


MAX_INPUT_SIZE = 4096          # pixels a side: 65,536 patches of 16 px, already far past any ViT recipe
MAX_PARAMETERS = 20e9          # 80 GB of float32 weights before a single gradient


def check_model_size(config: dict[str, Any]) -> None:
    """Refuse, before any image is drawn or weight allocated, a model no machine holds (the process would be
    killed by the kernel's out-of-memory killer with no message)."""
    size = config.get("input_size")
    if size is not None and size > MAX_INPUT_SIZE:
        raise SarvitError(f"--input-size {size}: expected at most {MAX_INPUT_SIZE} pixels a side (one {size} px "
                          f"image alone is {3 * size * size * 4 / 2 ** 30:.0f} GiB as float32)")
    depth, width = config.get("depth"), config.get("embed_dim")
    if depth and width and 12 * depth * width ** 2 > MAX_PARAMETERS:
        raise SarvitError(f"--depth {depth} at width {width}: about {12 * depth * width ** 2 / 1e9:.0f} billion "
                          f"parameters, more than the {MAX_PARAMETERS / 1e9:.0f} billion any machine here holds; "
                          "expected a smaller --depth or --embed-dim")


def checked_sets(config: dict[str, Any], train_set, val_set, num_classes: Optional[int]):
    """``(train_set, val_set)`` as training may read them: at least 2 classes (unless a pretext task relabels
    them), every image decodable (:func:`sarvit.data.checks.check_images`: all bad files in one message, or left
    out with ``--skip-bad-images``)."""
    if not config.get("pretext") and num_classes is not None and num_classes < 2:
        where = f" at {config['data_path']}" if config.get("data_path") else ""
        raise SarvitError(f"{config['data_set']}{where}: expected at least 2 classes to classify, found "
                          f"{num_classes} (every image would be right); add class folders, or train a pretext task "
                          "with --pretext rotation")
    checked = check_images({"training": train_set, "validation": val_set},
                           skip_bad=bool(config.get("skip_bad_images")),
                           say=lambda line: print(line, flush=True) if int(os.environ.get("RANK", "0")) == 0 else None)
    return checked["training"], checked["validation"]


def _synthetic_kwargs(config: dict[str, Any], train: bool) -> dict[str, Any]:
    """Generator options of the synthetic set: images drawn at the model's input size."""
    if config["data_set"] != "synthetic":  # given anyway: build_dataset says they do not apply
        return {key: config[key] for key in ("num_samples", "num_classes") if config.get(key) is not None}
    kwargs = {"img_size": config["input_size"], "num_classes": config.get("num_classes")}
    if config.get("num_samples") is not None:
        kwargs["num_samples"] = config["num_samples"] if train else max(1, config["num_samples"] // 5)
    return kwargs


def build_datasets(config: dict[str, Any], train: bool = True, evaluation: bool = True):
    """``(train_set, val_set, num_classes)``; a set not asked for is None.

    With ``--pretext`` both sets are wrapped for the pretext task (their labels and masks dropped) and
    ``num_classes`` is the pretext's (4 rotations): the val top-1 is the rotation accuracy.
    """
    check_model_size(config)
    common = dict(root=config.get("data_path"), download=bool(config.get("download")))
    train_set = val_set = None
    num_classes = None
    if train:
        transform = build_transform(
            True, config["input_size"], auto_augment=config["aa"], reprob=config["reprob"], remode=config["remode"],
            recount=config["recount"], color_jitter=config["color_jitter"], hflip=config.get("hflip", 0.5),
            crop_scale=config.get("crop_scale") or (0.08, 1.0),
            interpolation=config["train_interpolation"])
        train_set, num_classes = build_dataset(
            config["data_set"], train=True, transform=transform, subset_ratio=float(config["subset_ratio"]),
            seed=config["seed"], **common, **_synthetic_kwargs(config, True))
    if evaluation:
        if config["data_set"] == "synthetic":
            # with its masks, evaluation also scores the attention (Jaccard); drawn at the input size already
            val_set, num_classes = build_mask_dataset("synthetic", **_synthetic_kwargs(config, False))
        else:
            transform = build_transform(False, config["input_size"], interpolation=config["train_interpolation"])
            val_set, num_classes = build_dataset(config["data_set"], train=False, transform=transform, **common,
                                                 **_synthetic_kwargs(config, False))
    train_set, val_set = checked_sets(config, train_set, val_set, num_classes)
    if config.get("pretext"):
        train_set, val_set = (None if dataset is None else pretext_dataset(config["pretext"], dataset)[0]
                              for dataset in (train_set, val_set))
        num_classes = ROTATIONS
    return train_set, val_set, num_classes


def cpus_per_process(info: DistInfo) -> int:
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
    return max(1, (os.cpu_count() or 1) // max(1, local))


def worker_count(requested: int, device: torch.device, cpus: Optional[int] = None) -> int:
    """Data-loading processes for ``--num-workers requested``: capped by ``cpus`` (default: all of this machine's),
    on a CPU device by a quarter of them (at least one), since the model's threads need the cores too."""
    cpus = cpus or os.cpu_count() or 1
    cap = max(1, cpus // 4) if device.type == "cpu" else cpus
    return max(0, min(int(requested), cap))


def _workers(config: dict[str, Any], info: DistInfo) -> int:
    return worker_count(config["num_workers"], info.device, cpus_per_process(info))


def cpu_threads(config: dict[str, Any], info: DistInfo) -> int:
    """Compute threads for a CPU device: the CPUs the data workers leave (never more than already set).

    Two OpenMP threads sharing two cores with a loader process stall each other; one each is faster.
    """
    return max(1, min(torch.get_num_threads(), cpus_per_process(info) - _workers(config, info)))



@contextlib.contextmanager
def cpu_thread_limit(config: dict[str, Any], info: DistInfo):
    """On a CPU device, leave the data workers their cores (:func:`cpu_threads`) until the block ends."""
    before = torch.get_num_threads()
    if info.device.type == "cpu":
        torch.set_num_threads(cpu_threads(config, info))
    try:
        yield
    finally:
        torch.set_num_threads(before)

def train_loader(dataset, config: dict[str, Any], info: DistInfo) -> DataLoader:
    """Shuffled per epoch (``loader.sampler.set_epoch``), sharded over processes, last partial batch dropped."""
    if config["repeated_aug"]:
        from timm.data.distributed_sampler import RepeatAugSampler

        # selected_round=0: an epoch is as long as the data set (DeiT's 256-rounding drops up to 255 images)
        sampler = RepeatAugSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                   selected_round=0)
    else:
        sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                     seed=config["seed"])
    loader = DataLoader(dataset, batch_size=config["batch_size"], sampler=sampler, num_workers=_workers(config, info),
                        pin_memory=bool(config["pin_mem"]) and info.device.type == "cuda", drop_last=True)
    if len(loader) == 0:
        raise SarvitError(
            f"the training set gives {len(sampler)} images per process, fewer than one batch of {config['batch_size']}; "
            "lower --batch-size")
    return loader


def check_input_fits(model: torch.nn.Module, datasets: dict, config: dict[str, Any]) -> None:
    """Before the first epoch: each set's first image is ``[3, S, S]`` with S = ``--input-size``, the patch
    divides S, and the model takes the image."""
    size = config["input_size"]
    for name, dataset in datasets.items():
        if dataset is None or len(dataset) == 0:
            continue
        image = dataset[0][0]
        if not isinstance(image, torch.Tensor) or tuple(image.shape) != (3, size, size):
            found = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise SarvitError(f"the {name} set gives images of shape {found}, the model expects (3, {size}, {size}) "
                              f"(--input-size {size}); check --input-size and the data set's transform")
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if isinstance(model, PYRAMIDS):  # PVT-v2's 7x7 stem overlaps: what the size must divide is its stride
        patch = model.patch_embed.proj.stride
    if patch is not None and (size % patch[0] or size % patch[1]):
        raise SarvitError(f"--input-size {size} is not a multiple of the patch size {patch[0]}: the last "
                          f"{size % patch[0]} px of every image would never be seen; pick an input size the patch "
                          "divides")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(image.unsqueeze(0).to(next(model.parameters()).device))
    except (RuntimeError, AssertionError, ValueError) as error:
        raise SarvitError(f"{config['model']} (patch {config.get('patch_size') or 'as named'}) cannot take "
                          f"{size}-px images: {error}; pick an --input-size the --patch-size divides") from None
    finally:
        model.train(was_training)


def eval_loader(dataset, config: dict[str, Any], info: DistInfo) -> DataLoader:
    return DataLoader(dataset, batch_size=int(1.5 * config["batch_size"]),
                      sampler=ShardSampler(len(dataset), info.rank, info.world_size),
                      num_workers=_workers(config, info),
                      pin_memory=bool(config["pin_mem"]) and info.device.type == "cuda", drop_last=False)


def scaled_lr(config: dict[str, Any], world_size: int) -> float:
    """DeiT's rule: ``--lr`` is for a global batch of 512 (unless ``--unscale-lr``)."""
    if config["unscale_lr"]:
        return float(config["lr"])
    return float(config["lr"]) * config["batch_size"] * world_size / 512.0


def build_optimizer(model: torch.nn.Module, config: dict[str, Any], lr: float) -> torch.optim.Optimizer:
    kwargs = {"eps": config["opt_eps"]} if config.get("opt_eps") is not None else {}
    if config.get("opt_betas"):
        kwargs["betas"] = tuple(config["opt_betas"])
    try:
        return create_optimizer_v2(model, opt=config["opt"], lr=lr, weight_decay=config["weight_decay"],
                                   momentum=config["momentum"], **kwargs)
    except (AssertionError, ValueError, TypeError) as error:
        raise SarvitError(f"--opt {config['opt']!r}: timm could not build this optimizer ({error})") from None


def build_scheduler(optimizer, config: dict[str, Any], updates_per_epoch: int):
    """timm's scheduler, stepped after every update (``step_update``)."""
    try:
        scheduler, _ = create_scheduler_v2(
            optimizer, sched=config["sched"], num_epochs=config["epochs"], decay_epochs=config["decay_epochs"],
            decay_rate=config["decay_rate"], min_lr=config["min_lr"], warmup_lr=config["warmup_lr"],
            warmup_epochs=config["warmup_epochs"], step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    except (AssertionError, ValueError, TypeError) as error:
        raise SarvitError(f"--sched {config['sched']!r}: timm could not build this scheduler ({error})") from None
    if scheduler is None:
        raise SarvitError(f"--sched {config['sched']!r}: unknown scheduler; use cosine, step, multistep, poly, tanh")
    return scheduler


def build_mixup(config: dict[str, Any], num_classes: int) -> Optional[Mixup]:
    if not (config["mixup"] > 0 or config["cutmix"] > 0 or config.get("cutmix_minmax")):
        return None
    if config["batch_size"] % 2:
        raise SarvitError(f"mixup/cutmix need an even --batch-size, got {config['batch_size']}")
    return Mixup(mixup_alpha=config["mixup"], cutmix_alpha=config["cutmix"], cutmix_minmax=config.get("cutmix_minmax"),
                 prob=config["mixup_prob"], switch_prob=config["mixup_switch_prob"], mode=config["mixup_mode"],
                 label_smoothing=config["smoothing"], num_classes=num_classes)


def build_task(config: dict[str, Any], model: torch.nn.Module, num_classes: int) -> TrainingTask:
    """The run's task around ``model`` (a RegularizedModel): the rotation pretext with ``--pretext rotation``, else
    supervised classification (with DeiT's Mixup/CutMix when asked for)."""
    mixup = build_mixup(config, num_classes)
    criterion = build_criterion(config, mixup)
    task = RotationTask if config.get("pretext") == "rotation" else SupervisedTask
    return task(model, criterion, mixup)


def build_criterion(config: dict[str, Any], mixup: Optional[Mixup]):
    """DeiT's choice: soft-target CE with mixup (smoothing is inside the targets), else smoothed CE."""
    if mixup is not None:
        return SoftTargetCrossEntropy()
    if config["smoothing"] > 0:
        return LabelSmoothingCrossEntropy(smoothing=config["smoothing"])
    return torch.nn.CrossEntropyLoss()


def amp_dtype(config: dict[str, Any], device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype, or None for full precision (the default on CPU)."""
    enabled = config.get("amp")
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return None
    if config.get("amp_dtype", "bf16") == "fp16":
        if device.type != "cuda":
            raise SarvitError("--amp-dtype fp16 needs CUDA; use --amp-dtype bf16 on CPU")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def compile_step(module: torch.nn.Module, config: dict[str, Any]) -> torch.nn.Module:
    """``module`` (the training forward: model and loss terms, DDP-wrapped when distributed) under
    ``torch.compile`` as ``--compile-backend`` / ``--compile-mode`` say.

    Compiled after DDP, as timm does, so that dynamo's DDP optimizer splits the graph at gradient buckets.
    The training loader drops its last partial batch, so every step has the shape of the first: one graph,
    no recompilation. The compiled wrapper holds ``module`` as ``_orig_mod``; checkpoints keep writing the
    model itself, so no ``_orig_mod.`` prefix reaches a state dict.
    """
    backend = config["compile_backend"]
    if backend not in torch._dynamo.list_backends(exclude_tags=()):
        known = ", ".join(torch._dynamo.list_backends())
        raise SarvitError(f"--compile-backend: unknown torch.compile backend {backend!r}; expected one of {known}")
    return torch.compile(module, backend=backend, mode=config.get("compile_mode"))


def resident_loaders(config: dict[str, Any], info: DistInfo):
    """``(train_loader, val_loader, num_classes)`` over splits decoded once onto the device
    (:mod:`sarvit.data.gpu_resident`), or None for the DataLoader path.

    ``--resident-data auto`` takes this path on a CUDA device when the recipe has no pretext task and no
    auto-augment policy other than RandAugment, and both splits fit (:func:`~sarvit.data.gpu_resident.fits_on_device`);
    ``on`` takes it on any device (an unsupported recipe is an error), ``off`` never.
    """
    choice = config.get("resident_data", "auto")
    forced = choice == "on"
    if choice == "off" or (not forced and info.device.type != "cuda"):
        return None
    try:
        if config.get("pretext"):
            raise SarvitError("--resident-data on: GPU-resident data has no --pretext task; use --resident-data off")
        gpu_resident.rand_augment_policy(config["aa"])
    except SarvitError:
        if forced:
            raise
        return None
    check_model_size(config)
    size, interpolation = config["input_size"], config["train_interpolation"]
    synthetic = config["data_set"] == "synthetic"
    stored = size if synthetic else math.floor(size / EVAL_CROP_RATIO)  # the synthetic set is drawn at `size`
    common = dict(root=config.get("data_path"), download=bool(config.get("download")))
    train_set, num_classes = build_dataset(
        config["data_set"], train=True, transform=gpu_resident.square_transform(stored, interpolation),
        subset_ratio=float(config["subset_ratio"]), seed=config["seed"], **common, **_synthetic_kwargs(config, True))
    if synthetic:
        val_set, _ = build_mask_dataset("synthetic", transform=gpu_resident.square_transform(size, interpolation),
                                        **_synthetic_kwargs(config, False))
    else:
        eval_transform = gpu_resident.square_transform(math.floor(size / EVAL_CROP_RATIO), interpolation, crop=size)
        val_set, _ = build_dataset(config["data_set"], train=False, transform=eval_transform, **common,
                                   **_synthetic_kwargs(config, False))
    train_set, val_set = checked_sets(config, train_set, val_set, num_classes)
    num_bytes = len(train_set) * 3 * stored**2 + len(val_set) * (3 + 2 * synthetic) * size**2
    if not forced and not gpu_resident.fits_on_device(num_bytes, info.device):
        return None
    workers = _workers(config, info)
    train_data, val_data = (gpu_resident.ResidentSet(*gpu_resident.decode(dataset, info.device, workers), crop=size)
                            for dataset in (train_set, val_set))
    augment = gpu_resident.DeviceAugment(
        size, crop_scale=config.get("crop_scale") or (0.08, 1.0), hflip=config.get("hflip", 0.5),
        color_jitter=config["color_jitter"], auto_augment=config["aa"], reprob=config["reprob"],
        remode=config["remode"], recount=config["recount"], interpolation=interpolation).to(info.device)
    train = gpu_resident.ResidentLoader(train_data, config["batch_size"], augment=augment, rank=info.rank,
                                        world_size=info.world_size, seed=config["seed"],
                                        repeats=3 if config["repeated_aug"] else 1)
    if len(train) == 0:
        raise SarvitError(f"the training set gives {len(train.sampler)} images per process, fewer than one batch "
                          f"of {config['batch_size']}; lower --batch-size")
    val = gpu_resident.ResidentLoader(val_data, int(1.5 * config["batch_size"]), train=False, rank=info.rank,
                                      world_size=info.world_size)
    return train, val, num_classes
