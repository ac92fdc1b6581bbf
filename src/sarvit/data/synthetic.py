"""SyntheticObjects: a built-in, seeded, object-centric image dataset with ground-truth foreground masks.

Every item is a pure function of ``(seed, split, index)``: nothing is stored on disk and nothing is
downloaded, so the whole SAR pipeline (training, attention-map Jaccard, entropy analysis) runs anywhere.
The drawing itself is in :mod:`sarvit.data.shapes`.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import SarvitError
from .masks import MaskedDataset
from .shapes import SHAPES, ScenePainter

__all__ = ["SHAPES", "SyntheticObjects", "SyntheticMasks"]

_SPLIT_CODES = {True: 0, False: 1}  # train / val draw from disjoint seed streams


class SyntheticObjects(Dataset):
    """Procedural object-on-clutter images; class = the object's shape, with a pixel-exact foreground mask.

    One object per image (disc, square, triangle, cross, ring, star, ellipse, crescent, L-shape, arrow, and
    with ``num_classes`` up to 12 also tee and half-disc) at a random position, scale (radius 24-38% of the
    image side), rotation, mirror and colour, on a darker textured background (gradients, stripes, blotches,
    pixel noise) with 1-4 small stroke-shaped distractors that are not class shapes. About a quarter of the objects are
    cut by an occluding bar (background-textured or a solid "pole"), so the foreground can be two connected
    regions. Colour is drawn independently of the class.

    Item ``i`` has class ``i % num_classes`` (exactly balanced) and is a pure function of
    ``(seed, train, index)`` (plus ``num_classes``, ``img_size``); the train and val splits use disjoint
    random streams.

    Args:
        num_samples: dataset length.
        num_classes: number of shape classes, 2..12 (the first ``num_classes`` of :data:`SHAPES`).
        img_size: side S of the square generated images, in pixels (>= 16).
        seed: base seed.
        train: which split (train and val images differ).
        transform: applied to the PIL image (e.g. from :func:`sarvit.data.build_transform`).

    Items: ``(PIL.Image RGB SxS or transform(image), int target)``; :meth:`render` gives the image with its
    foreground, and :class:`SyntheticMasks` is the same images as a dataset with masks.

    Example:
        >>> ds = SyntheticObjects(num_samples=100, img_size=64)
        >>> image, target = ds[0]          # a 64x64 PIL image and its shape class
    """

    def __init__(
        self,
        num_samples: int = 5000,
        num_classes: int = 10,
        img_size: int = 64,
        seed: int = 0,
        train: bool = True,
        transform: Optional[Callable] = None,
    ) -> None:
        if not 2 <= num_classes <= len(SHAPES):
            raise SarvitError(f"synthetic: num_classes must be in 2..{len(SHAPES)} (one class per shape), got {num_classes}")
        if num_samples < 1:
            raise SarvitError(f"synthetic: num_samples must be >= 1, got {num_samples}")
        if img_size < 16:
            raise SarvitError(f"synthetic: img_size must be >= 16 pixels, got {img_size}")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.img_size = img_size
        self.seed = seed
        self.train = train
        self.transform = transform
        self.classes = list(SHAPES)[:num_classes]
        self.targets = [index % num_classes for index in range(num_samples)]
        self._painter = ScenePainter(img_size)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int):
        image, _, target = self.render(index)
        pil_image = Image.fromarray(image)
        return (self.transform(pil_image) if self.transform else pil_image), target

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Generate item ``index``: ``(image uint8 [S, S, 3], foreground mask bool [S, S], target int)``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[bool(self.train)], index])
        target = self.targets[index]
        image, mask = self._painter.paint(rng, self.classes[target])
        return image, mask, target

    def extra_repr(self) -> str:
        split = "train" if self.train else "val"
        return f"split={split}, num_classes={self.num_classes}, img_size={self.img_size}, seed={self.seed}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_samples={self.num_samples}, {self.extra_repr()})"


class SyntheticMasks(MaskedDataset):
    """The images of :class:`SyntheticObjects` with their exact foreground (every pixel valid).

    Args: those of :class:`SyntheticObjects` (``transform`` excepted), and ``output_size`` and ``transform``
    of :class:`~sarvit.data.masks.MaskedDataset` (default: ``img_size`` and an ImageNet-normalising resize).

    Example:
        >>> ds = SyntheticMasks(num_samples=100, img_size=64)
        >>> image, target, foreground, valid = ds[0]     # [3, 64, 64] float, int, [64, 64] bool, [64, 64] bool
    """

    def __init__(self, num_samples: int = 1000, num_classes: int = 10, img_size: int = 64, seed: int = 0,
                 train: bool = False, *, output_size: Optional[int] = None,
                 transform: Optional[Callable] = None) -> None:
        self.objects = SyntheticObjects(num_samples, num_classes, img_size, seed, train)
        self.num_classes, self.classes, self.targets = num_classes, self.objects.classes, self.objects.targets
        super().__init__(output_size or img_size, transform)

    def __len__(self) -> int:
        return len(self.objects)

    def load(self, index: int):
        image, foreground, target = self.objects.render(index)
        return Image.fromarray(image), target, foreground, np.ones_like(foreground)

    def extra_repr(self) -> str:
        return self.objects.extra_repr()
