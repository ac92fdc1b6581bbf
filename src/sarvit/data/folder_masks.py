"""Your own images with binary foreground masks: ``--data-set masks``.

Layout (the image tree is an ImageFolder tree or any tree; the mask tree repeats its relative paths)::

    DIR/images/<relative path>.<jpg|png|...>
    DIR/masks/<relative path>.png        0/1 or 0/255 (any non-zero value is foreground), any size

Image and mask are fitted to the model's input together, as for VOC (:class:`~sarvit.data.masks.MaskedDataset`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
from PIL import Image

from ..errors import SarvitError
from .loading import IMAGE_SUFFIXES, load_rgb_image
from .masks import NO_TARGET, MaskedDataset

__all__ = ["FolderMasks", "read_binary_mask"]


def read_binary_mask(path: Path) -> np.ndarray:
    """``bool [h, w]`` foreground of a 0/1 or 0/255 mask PNG (modes 1, L, P, I, I;16)."""
    try:
        with Image.open(path) as mask:
            mask.load()
    except (OSError, Image.DecompressionBombError) as error:
        raise SarvitError(f"masks: could not decode the mask file {path}: {error}") from None
    if mask.mode not in ("1", "L", "P", "I", "I;16"):
        raise SarvitError(f"masks: expected a one-channel mask PNG (0/1 or 0/255) at {path}, found mode {mask.mode}")
    values = np.asarray(mask)
    found = np.unique(values)
    if not (set(found.tolist()) <= {0, 1} or set(found.tolist()) <= {0, 255}):
        raise SarvitError(f"masks: expected a binary mask (values 0/1 or 0/255) at {path}, found values "
                          f"{found[:6].tolist()}{'...' if len(found) > 6 else ''}")
    return values != 0


class FolderMasks(MaskedDataset):
    """Images under ``root/images`` with the masks of the same relative paths under ``root/masks`` (``.png``).

    Items ``(image [3, S, S], target, foreground [S, S] bool, valid [S, S] bool (all True))``; ``target`` is the
    index of the image's top folder when every image lies in one (an ImageFolder tree), else -1. Every mask is
    decoded once here: a missing or non-binary mask, or a set without any foreground, is an error naming the file.
    """

    def __init__(self, root: Union[str, Path], img_size: int = 224, transform: Optional[Callable] = None) -> None:
        root = Path(root).expanduser()
        images_dir, masks_dir = root / "images", root / "masks"
        for folder in (images_dir, masks_dir):
            if not folder.is_dir():
                raise SarvitError(f"masks: expected the layout {root}/images/<path>.<jpg|png|...> and "
                                  f"{root}/masks/<path>.png; {folder} not found")
        self.images = sorted(path for path in images_dir.rglob("*")
                             if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        if not self.images:
            raise SarvitError(f"masks: expected images ({', '.join(IMAGE_SUFFIXES)}) under {images_dir}, found none")
        relative = [path.relative_to(images_dir) for path in self.images]
        self.masks = [masks_dir / path.with_suffix(".png") for path in relative]
        self.image_ids = [str(path.with_suffix("")) for path in relative]
        for image, mask in zip(self.images, self.masks):
            if not mask.is_file():
                raise SarvitError(f"masks: expected the mask {mask} of {image}, not found")
        if not any(read_binary_mask(mask).any() for mask in self.masks):
            raise SarvitError(f"masks: no mask under {masks_dir} marks any foreground (every pixel 0, first "
                              f"{self.masks[0]}); expected 1 or 255 on the object")
        tops = [path.parts[0] if len(path.parts) > 1 else None for path in relative]
        self.classes = sorted(set(tops)) if None not in tops else []
        self.targets = [self.classes.index(top) for top in tops] if self.classes else [NO_TARGET] * len(tops)
        self.img_size = img_size
        super().__init__(img_size, transform)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int):
        foreground = read_binary_mask(self.masks[index])
        return (load_rgb_image(self.images[index]), self.targets[index], foreground,
                np.ones_like(foreground, dtype=bool))
