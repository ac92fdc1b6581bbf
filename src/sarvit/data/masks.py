"""Datasets with masks: items ``(image, target, foreground, valid)`` in one shape, whatever the source."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from .transforms import build_mask_transform

__all__ = ["MaskedDataset", "NO_TARGET", "fit_square"]

NO_TARGET = -1  # the target of an image without an image-level class (VOC segmentation)


class MaskedDataset(Dataset):
    """Base of the datasets with masks; a subclass implements ``load(index) -> (PIL image, target,
    foreground bool [h, w], valid bool [h, w])`` (numpy) and ``__len__``.

    Items: ``(image [3, S, S] float, target int, foreground [S, S] bool, valid [S, S] bool)``, ``valid`` False on
    pixels that count for nothing (VOC's void boundaries). Image and masks are first fitted to ``S x S`` the way
    timm's evaluation transform fits an image (shorter side resized to ``S``, then the centre ``S x S`` crop; the
    aspect ratio is kept), the image bilinear, the masks nearest-neighbour so labels are never blended; then
    the image goes through ``transform`` (default :func:`sarvit.data.build_mask_transform` at ``S`` with
    ImageNet's statistics, which no longer changes its size).
    """

    def __init__(self, output_size: int, transform: Optional[Callable] = None) -> None:
        self.output_size = int(output_size)
        self.transform = transform if transform is not None else build_mask_transform(self.output_size)

    def load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        image, target, foreground, valid = self.load(index)
        image = fit_square(image, self.output_size, InterpolationMode.BILINEAR)
        masks = [np.asarray(fit_square(Image.fromarray(mask), self.output_size, InterpolationMode.NEAREST))
                 for mask in (foreground, valid)]
        return self.transform(image), target, torch.from_numpy(masks[0].copy()), torch.from_numpy(masks[1].copy())


def fit_square(picture: Image.Image, size: int, interpolation: InterpolationMode) -> Image.Image:
    """``picture`` with its shorter side resized to ``size``, then its centre ``size x size`` crop (as timm's
    evaluation transform at ``crop_pct=1``): a photo keeps its aspect ratio instead of being squashed."""
    if picture.size == (size, size):
        return picture
    return TF.center_crop(TF.resize(picture, size, interpolation=interpolation), size)
