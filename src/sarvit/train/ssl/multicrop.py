"""Multi-crop views (DINO) and two-view crops (MoCo-v3 / BYOL's augmentation) of one image, as torchvision
transforms: a dataset built with ``transform=MultiCrop(...)`` yields ``([global_1, global_2, local_1, ...], target)``
and the default collate turns a batch into a list of ``[B, 3, size, size]`` tensors, global crops first."""
from __future__ import annotations

from typing import Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T

__all__ = ["MultiCrop", "blur_kernel"]


def blur_kernel(size: int) -> int:
    """An odd Gaussian-blur kernel of about a tenth of the crop side (DINO's PIL radius 0.1-2 at 224 px ~ 23 px)."""
    return max(3, (size // 10) | 1)


def _view(size: int, scale: Sequence[float], blur: float, solarize: float) -> T.Compose:
    """One view: random-resized crop, flip, colour jitter (p 0.8), greyscale (p 0.2), blur (p ``blur``),
    solarisation (p ``solarize``), ImageNet normalisation, as DINO's and MoCo-v3's augmentations have them."""
    steps = [
        T.RandomResizedCrop(size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomHorizontalFlip(p=0.5),
        T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))], p=blur),
    ]
    if solarize > 0:
        steps.append(T.RandomSolarize(threshold=128, p=solarize))
    steps += [T.ToTensor(), T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)]
    return T.Compose(steps)


class MultiCrop:
    """Two global views and ``local_crops`` local views of an image (PIL) -> a list of tensors ``[3, S, S]``.

    The global views follow DINO (and BYOL / MoCo-v3): the first always blurred, the second blurred with
    p 0.1 and solarised with p 0.2; the local views are blurred with p 0.5. ``local_crops=0`` gives MoCo-v3's
    two views (with ``global_scale=(0.08, 1)``).

    Example:
        >>> from PIL import Image
        >>> views = MultiCrop(32, 16, local_crops=3)(Image.new("RGB", (40, 40)))
        >>> [tuple(view.shape) for view in views]
        [(3, 32, 32), (3, 32, 32), (3, 16, 16), (3, 16, 16), (3, 16, 16)]
    """

    def __init__(self, global_size: int, local_size: int = 96, local_crops: int = 8,
                 global_scale: Sequence[float] = (0.4, 1.0), local_scale: Sequence[float] = (0.05, 0.4)) -> None:
        if local_crops < 0:
            raise ValueError(f"local_crops must be >= 0, got {local_crops}")
        for name, scale in (("global_scale", global_scale), ("local_scale", local_scale)):
            if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max <= 1, got {tuple(scale)}")
        self.global_views = (_view(global_size, global_scale, 1.0, 0.0), _view(global_size, global_scale, 0.1, 0.2))
        self.local_view = _view(local_size, local_scale, 0.5, 0.0)
        self.local_crops = local_crops

    def __call__(self, image) -> list[torch.Tensor]:
        return [view(image) for view in self.global_views] + [self.local_view(image) for _ in range(self.local_crops)]
