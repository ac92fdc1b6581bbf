"""Datasets with masks: items ``(image, target, foreground, valid)`` in one shape, whatever the source."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .transforms import build_mask_transform

__all__ = ["MaskedDataset", "NO_TARGET"]

NO_TARGET = -1  # the target of an image without an image-level class (VOC segmentation)


class MaskedDataset(Dataset):
    """Base of the datasets with masks; a subclass implements ``load(index) -> (PIL image, target,
    foreground bool [h, w], valid bool [h, w])`` (numpy) and ``__len__``.

    Items: ``(image [3, S, S] float, target int, foreground [S, S] bool, valid [S, S] bool)``, ``valid`` False on
    pixels that count for nothing (VOC's void boundaries). The image goes through ``transform`` (default
    :func:`sarvit.data.build_mask_transform` at ``S`` with ImageNet's statistics: a resize to ``S x S``, no crop,
    so image and masks stay aligned); the masks are resized to ``S x S`` with nearest-neighbour, never blended.
    """

    def __init__(self, output_size: int, transform: Optional[Callable] = None) -> None:
        self.output_size = int(output_size)
        self.transform = transform if transform is not None else build_mask_transform(self.output_size)

    def load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
        image, target, foreground, valid = self.load(index)
        size = (self.output_size, self.output_size)
        masks = [np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST)) if mask.shape != size else mask
                 for mask in (foreground, valid)]
        return self.transform(image), target, torch.from_numpy(masks[0].copy()), torch.from_numpy(masks[1].copy())
