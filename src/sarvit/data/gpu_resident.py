"""Small data sets held on the device: decoded once into uint8 tensors, augmented there in batches.

The loader path decodes and augments every image on CPU workers each epoch (PIL); for the small-data regime
(a few thousand to ~100 k images) that, not the GPU, sets the pace. Here each split is decoded once into a
``uint8 [N, 3, R, R]`` tensor on the training device and every batch is cut from it by index and augmented
there by kornia's batched, per-sample random transforms, in the loader path's order: random resized crop
(``crop_scale``, aspect 3/4..4/3), horizontal flip, colour jitter (only without auto-augment, as timm) or
RandAugment, normalisation, random erasing (timm's fills: ``pixel``, ``rand``, ``const``). Mixup/CutMix stay
in the training loop (timm's ``Mixup`` works on device tensors). Evaluation reads resident tensors too.

What is stored: the training split as ``R x R`` squares (shorter side resized to ``R``, centre square; ``R`` =
the input size for the synthetic set, drawn at that size, else ``floor(input_size / eval_crop_ratio)``),
so crops of a non-square image come from its centre square; the evaluation split already as timm's
evaluation transform leaves it (resize, centre crop to the input size), with its masks if it has them.

RandAugment is kornia's (ops drawn per group of :data:`RAND_AUGMENT_GROUP` samples, the magnitude scaled
from timm's 0..10 to kornia's 0..30): not the same op set as timm's, so the two paths agree in distribution
for every recipe without auto-augment (tested), and only approximately with it.

Size test (``resident="auto"``): on a CUDA device, both splits' bytes at most :data:`MEMORY_FRACTION` of the
free device memory; on any other device ``auto`` keeps the loader. ``"on"`` / ``"off"`` force either way.
"""
from __future__ import annotations

import math
import re
from typing import Optional

import kornia.augmentation as K
import torch
from kornia.augmentation.auto import RandAugment
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from ..errors import SarvitError
from .masks import fit_square
from .transforms import _INTERPOLATIONS

__all__ = ["DeviceAugment", "ResidentLoader", "ResidentSet", "MEMORY_FRACTION", "RAND_AUGMENT_GROUP",
           "RESIDENT_CHOICES", "decode", "fits_on_device", "rand_augment_policy", "square_transform"]

RESIDENT_CHOICES = ("auto", "on", "off")
MEMORY_FRACTION = 0.25
RAND_AUGMENT_GROUP = 8


def rand_augment_policy(policy: Optional[str]) -> Optional[tuple[int, float]]:
    """timm's ``rand-m9-n2-...`` -> ``(n, m)``; None for no auto-augment; SarvitError for other policies."""
    if policy is None or policy.strip().lower() in ("", "none"):
        return None
    parts = policy.split("-")
    if parts[0] != "rand":
        raise SarvitError(f"GPU-resident data applies RandAugment policies ('rand-m9-...') or none; got --aa "
                          f"{policy!r} (use --resident-data off for it)")
    settings = {"n": 2.0, "m": 9.0}  # timm's defaults
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)([\d.]+)", part)
        if match:
            settings[match[1]] = float(match[2])
    return int(settings["n"]), settings["m"]


class DeviceAugment(nn.Module):
    """The training transform of :func:`sarvit.data.build_transform`, batched on the device.

    Shape: ``uint8 [B, 3, R, R]`` -> ``float32 [B, 3, S, S]`` (normalised), ``S = input_size``.

    Example:
        >>> augment = DeviceAugment(8, crop_scale=(0.5, 1.0), auto_augment=None, reprob=0.25)
        >>> augment(torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)).shape
        torch.Size([4, 3, 8, 8])
    """

    def __init__(self, input_size: int, *, crop_scale=(0.08, 1.0), hflip: float = 0.5,
                 color_jitter: Optional[float] = 0.3, auto_augment: Optional[str] = "rand-m9-mstd0.5-inc1",
                 reprob: float = 0.25, remode: str = "pixel", recount: int = 1, interpolation: str = "bicubic",
                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD) -> None:
        super().__init__()
        if interpolation not in _INTERPOLATIONS:
            raise SarvitError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {interpolation!r}")
        if remode not in ("pixel", "rand", "const"):
            raise SarvitError(f"--remode: expected pixel, rand or const, got {remode!r}")
        self.crop = K.RandomResizedCrop((input_size, input_size), scale=tuple(crop_scale), ratio=(3 / 4, 4 / 3),
                                        resample=interpolation.upper(), cropping_mode="resample")
        self.flip = K.RandomHorizontalFlip(p=float(hflip)) if hflip > 0 else None
        policy = rand_augment_policy(auto_augment)
        self.rand_augment = RandAugment(n=policy[0], m=min(29, max(1, round(3 * policy[1])))) if policy else None
        jitter = float(color_jitter or 0.0)
        self.jitter = K.ColorJitter(jitter, jitter, jitter, 0.0, p=1.0) if policy is None and jitter > 0 else None
        self.erase = (K.RandomErasing(scale=(0.02, 1 / 3), ratio=(0.3, 1 / 0.3), value=0.0, p=float(reprob))
                      if reprob > 0 else None)
        self.remode, self.recount = remode, int(recount)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.crop(images.float() / 255)
        if self.flip is not None:
            x = self.flip(x)
        if self.jitter is not None:
            x = self.jitter(x)
        if self.rand_augment is not None:  # kornia draws one op sequence per call: one call per small group
            x = torch.cat([self.rand_augment(group) for group in x.split(RAND_AUGMENT_GROUP)])
        x = (x.clamp(0, 1) - self.mean.to(x.device)) / self.std.to(x.device)
        for _ in range(self.recount if self.erase is not None else 0):
            kept = self.erase(torch.ones_like(x[:, :1])) > 0  # kornia draws the rectangles, timm's fill fills them
            x = torch.where(kept, x, self._fill(x))
        return x

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        if self.remode == "pixel":
            return torch.randn_like(x)
        if self.remode == "rand":
            return torch.randn(x.shape[0], x.shape[1], 1, 1, device=x.device, dtype=x.dtype)
        return torch.zeros_like(x)


def square_transform(size: int, interpolation: str = "bicubic", crop: Optional[int] = None):
    """PIL image -> ``uint8 [3, crop or size, ...]``: shorter side to ``size``, centre square (then ``crop``)."""
    steps = [_FitSquare(size, _INTERPOLATIONS[interpolation])]
    if crop is not None and crop != size:
        steps.append(T.CenterCrop(crop))
    return T.Compose([*steps, T.PILToTensor()])


class _FitSquare:
    """:func:`~sarvit.data.masks.fit_square` as a picklable transform (loader workers may be spawned)."""

    def __init__(self, size: int, interpolation) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, image):
        return fit_square(image, self.size, self.interpolation)


def decode(dataset: Dataset, device: torch.device, num_workers: int = 0) -> list[torch.Tensor]:
    """Every item of ``dataset`` (tensors and ints) stacked field by field, on ``device``: ``[N, ...]`` each."""
    fields: list[list[torch.Tensor]] = []
    for batch in DataLoader(dataset, batch_size=256, num_workers=num_workers):
        fields = fields or [[] for _ in batch]
        for parts, value in zip(fields, batch):
            parts.append(value)
    if not fields:
        raise SarvitError("GPU-resident data: the data set is empty")
    return [torch.cat(parts).to(device) for parts in fields]


def fits_on_device(num_bytes: int, device: torch.device) -> bool:
    """``num_bytes`` at most :data:`MEMORY_FRACTION` of ``device``'s free memory (CUDA only; else False)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return num_bytes <= MEMORY_FRACTION * free


class ResidentSet(Dataset):
    """A decoded split: ``images uint8 [N, 3, R, R]``, ``targets [N]`` and optional masks ``[N, S, S]`` on the
    device. ``dataset[i]`` is item ``i`` as the evaluation transform gives it (on CPU, centre-cropped to ``crop``
    when the stored squares are larger, as the training split's are): for checks, not loops."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, *masks: torch.Tensor,
                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, crop: Optional[int] = None) -> None:
        self.images, self.targets, self.masks, self.crop = images, targets.long(), masks, crop
        self.has_masks = bool(masks)
        self.mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255 - self.mean) / self.std

    def __getitem__(self, index: int):
        image = self.normalise(self.images[index:index + 1])[0].cpu()
        if self.crop is not None and image.shape[-1] > self.crop:
            top = (image.shape[-1] - self.crop) // 2
            image = image[:, top:top + self.crop, top:top + self.crop]
        return (image, int(self.targets[index]), *(mask[index].cpu() for mask in self.masks))


class _EpochShard:
    """The sampler face of :class:`ResidentLoader`: ``set_epoch`` and the number of items per process."""

    def __init__(self, length: int, rank: int, world_size: int, shuffle: bool, batch_size: int,
                 drop_last: bool, repeats: int = 1) -> None:
        self.length, self.rank, self.world_size, self.shuffle = length, rank, world_size, shuffle
        self.repeats = repeats
        per_process = length // world_size if shuffle else max(0, math.ceil((length - rank) / world_size))
        self.num_items = per_process - per_process % batch_size if drop_last else per_process
        self.epoch, self.seed = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.rank, self.length, self.world_size)
        order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        # repeated augmentation (timm's RepeatAugSampler, selected_round=0): each image `repeats` times in a row,
        # dealt round-robin, so its views land on different processes; an epoch stays the data set's length
        return order.repeat_interleave(self.repeats)[self.rank::self.world_size][:self.num_items]

    def __len__(self) -> int:
        return self.num_items


class ResidentLoader:
    """Batches of a :class:`ResidentSet`, like a DataLoader: ``(images [B, 3, S, S] float, targets [B], *masks)``
    on the set's device, shuffled per epoch (``loader.sampler.set_epoch``) and sharded over processes (training:
    ``DistributedSampler``-like, last partial batch dropped; evaluation: process ``r`` reads ``r, r + n, ...``).

    ``augment`` (a :class:`DeviceAugment`) makes the training batches; without it a batch is only normalised.
    ``repeats`` > 1: repeated augmentation (each image that many times an epoch, as timm's ``RepeatAugSampler``).
    """

    def __init__(self, dataset: ResidentSet, batch_size: int, *, augment: Optional[nn.Module] = None,
                 train: bool = True, rank: int = 0, world_size: int = 1, seed: int = 0, repeats: int = 1) -> None:
        self.dataset, self.batch_size, self.augment = dataset, int(batch_size), augment
        self.sampler = _EpochShard(len(dataset), rank, world_size, train, self.batch_size, drop_last=train,
                                   repeats=repeats)
        self.sampler.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self):
        data = self.dataset
        for chosen in self.sampler.indices().to(data.images.device).split(self.batch_size):
            images = data.images[chosen]
            images = self.augment(images) if self.augment is not None else data.normalise(images)
            yield (images, data.targets[chosen], *(mask[chosen] for mask in data.masks))
