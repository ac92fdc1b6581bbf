"""PASCAL VOC 2012 foreground masks for the attention-map Jaccard protocol of DINO / Naseer et al."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from typing import Callable, Optional

import numpy as np
from PIL import Image

from ..errors import SarvitError
from .loading import load_rgb_image
from .masks import NO_TARGET, MaskedDataset

VOC_SPLITS = ("train", "val", "trainval")
VOID_LABEL = 255  # object boundaries and ambiguous pixels, excluded from the Jaccard


def find_voc2012(root: Union[str, Path]) -> Path:
    """The VOC2012 folder given ``root`` = that folder, its parent, or the parent of ``VOCdevkit``."""
    root = Path(root).expanduser()
    candidates = [root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"]
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir():
            return candidate
    looked_at = ", ".join(str(candidate / "JPEGImages") for candidate in candidates)
    raise SarvitError(
        f"voc: expected the PASCAL VOC 2012 layout (VOC2012/JPEGImages, SegmentationObject or SegmentationClass, "
        f"ImageSets/Segmentation) under {root}; no JPEGImages folder found at {looked_at}"
    )


class VOCForeground(MaskedDataset):
    """PASCAL VOC 2012 segmentation images with their foreground and valid masks, resized for a ViT.

    Image and masks are fitted to ``img_size x img_size`` together (shorter side resized, centre crop: the aspect
    ratio is kept; see :class:`~sarvit.data.masks.MaskedDataset`), then the image goes through ``transform``
    (default: ImageNet normalisation). Foreground = any object label (1..254); the void label 255
    (object boundaries) is neither foreground nor valid. Masks come from ``SegmentationObject`` when that folder
    exists, else from ``SegmentationClass`` (both give the same foreground).

    Args:
        root: the ``VOC2012`` folder, its parent (``VOCdevkit``) or the parent of ``VOCdevkit``.
        split: ``"train"``, ``"val"`` or ``"trainval"`` (``ImageSets/Segmentation/<split>.txt``).
        img_size: side S of the returned image and masks.
        transform: ``S x S`` PIL image -> ``[3, S, S]`` tensor (see :func:`sarvit.data.build_mask_transform`).

    Items: ``(image [3, S, S] float, -1 (no image-level class), foreground [S, S] bool, valid [S, S] bool)``;
    ``image_ids[i]`` names item ``i`` (e.g. ``"2007_000033"``).
    """

    def __init__(
        self,
        root: Union[str, Path],
        split: str = "val",
        img_size: int = 224,
        transform: Optional[Callable] = None,
    ) -> None:
        if split not in VOC_SPLITS:
            raise SarvitError(f"voc: split must be one of {', '.join(VOC_SPLITS)}, got {split!r}")
        self.voc_dir = find_voc2012(root)
        list_file = self.voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.is_file():
            raise SarvitError(f"voc: expected the image list {list_file}, not found")
        self.image_ids = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        if not self.image_ids:
            raise SarvitError(f"voc: expected image ids in {list_file}, found an empty file")

        self.mask_dir = self.voc_dir / "SegmentationObject"
        if not self.mask_dir.is_dir():
            self.mask_dir = self.voc_dir / "SegmentationClass"
        for image_id in self.image_ids:  # fail now, naming the file, rather than mid-evaluation
            for path in (self._image_path(image_id), self._mask_path(image_id)):
                if not path.is_file():
                    raise SarvitError(f"voc: {list_file.name} lists {image_id!r}, expected the file {path}, not found")
        self._check_foreground()
        self.img_size = img_size
        super().__init__(img_size, transform)

    def _check_foreground(self) -> None:
        """Every mask marks an object: one whose object pixels are all void (a 0/255 binary mask read as VOC
        labels) would score attention against nothing."""
        for image_id in self.image_ids:
            path = self._mask_path(image_id)
            labels = np.asarray(self._load_labels(path))
            if not ((labels != 0) & (labels != VOID_LABEL)).any():
                void = " and void 255" if (labels == VOID_LABEL).any() else ""
                raise SarvitError(f"voc: the mask {path} holds no object label (1-254), only background 0{void}; "
                                  "binary 0/255 masks of your own go in --data-set masks (DIR/images + DIR/masks)")

    def _image_path(self, image_id: str) -> Path:
        return self.voc_dir / "JPEGImages" / f"{image_id}.jpg"

    def _mask_path(self, image_id: str) -> Path:
        return self.mask_dir / f"{image_id}.png"

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int):
        image_id = self.image_ids[index]
        labels = np.asarray(self._load_labels(self._mask_path(image_id)))
        valid = labels != VOID_LABEL
        return load_rgb_image(self._image_path(image_id)), NO_TARGET, (labels != 0) & valid, valid

    @staticmethod
    def _load_labels(path: Path) -> Image.Image:
        """The label image of a VOC mask PNG: palette indices ('P') or grey levels ('L') are the labels."""
        try:
            with Image.open(path) as mask:
                mask.load()
        except OSError as error:
            raise SarvitError(f"voc: could not decode the mask file {path}: {error}") from None
        if mask.mode not in ("P", "L"):
            raise SarvitError(f"voc: expected a palette (P) or greyscale (L) label PNG at {path}, found mode {mask.mode}")
        return mask

    def extra_repr(self) -> str:
        return f"root={self.voc_dir}, masks={self.mask_dir.name}, img_size={self.img_size}"
