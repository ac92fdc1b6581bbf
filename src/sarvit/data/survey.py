"""What a recipe needs to know of a data set before it is built: how many training images, how big they are.

Cheap by design: the torchvision sets' sizes are known, a folder's images are counted (up to a cap) and a few
of their headers read, nothing is decoded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .loading import IMAGE_SUFFIXES
from .registry import SYNTHETIC_TRAIN_SAMPLES, canonical_dataset_name

__all__ = ["DataSurvey", "survey", "SURVEY_OPTIONS"]

# the run options a survey reads: a change to one of them makes an earlier survey stale
SURVEY_OPTIONS = ("data_set", "data_path", "num_samples", "subset_ratio")

COUNT_CAP = 200_000          # enough to tell "small" from "ImageNet"; counting further only costs time
HEADERS_READ = 16

# Training-split images and the typical image side of the sets sarvit reads by name.
_KNOWN = {"cifar10": (50_000, 32), "cifar100": (50_000, 32), "flowers": (2_040, 500), "pets": (3_680, 500),
          "imagenet": (1_281_167, 400), "imnet-100": (126_689, 400)}


@dataclass(frozen=True)
class DataSurvey:
    """``images``: training images (after ``--subset-ratio``), None if unknown; ``side``: a typical image side
    in pixels (the median of the shorter sides read), None if unknown or drawn at any size (synthetic)."""

    images: Optional[int]
    side: Optional[int]


def survey(name: str, root: Optional[str], *, num_samples: Optional[int] = None,
           subset_ratio: float = 1.0) -> DataSurvey:
    """The :class:`DataSurvey` of a data set by name; a folder that cannot be read gives ``DataSurvey(None, None)``
    (building the data set then says what is wrong)."""
    key = canonical_dataset_name(name)
    if key == "synthetic":
        images, side = (SYNTHETIC_TRAIN_SAMPLES if num_samples is None else num_samples), None
    elif key in _KNOWN:
        images, side = _KNOWN[key]
    else:
        images, side = _folder(Path(root).expanduser() / "train") if root else (None, None)
    if images is not None:
        images = max(1, round(images * float(subset_ratio)))
    return DataSurvey(images, side)


def _folder(train_dir: Path) -> tuple[Optional[int], Optional[int]]:
    if not train_dir.is_dir():
        return None, None
    count, sample = 0, []
    for folder, _, files in os.walk(train_dir):
        images = [file for file in files if file.lower().endswith(IMAGE_SUFFIXES)]
        count += len(images)
        sample += [Path(folder) / file for file in images[:4]][: HEADERS_READ - len(sample)]  # a few per class
        if count >= COUNT_CAP:
            break
    return (count or None), _median_side(sample)


def _median_side(files: list[Path]) -> Optional[int]:
    from PIL import Image

    sides = []
    for file in files:
        try:
            with Image.open(file) as image:  # reads the header only
                sides.append(min(image.size))
        except OSError:
            continue
    return sorted(sides)[len(sides) // 2] if sides else None
