"""Datasets by name (DeiT's ``--data-set``): :func:`build_dataset` for ``(image, target)`` items and
:func:`build_mask_dataset` for the datasets with masks, ``(image, target, foreground, valid)``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

from torch.utils.data import Dataset

from ..errors import SarvitError
from .folder_masks import FolderMasks
from .masks import MaskedDataset
from .subsets import per_class_subset, sample_targets
from .synthetic import SyntheticMasks, SyntheticObjects
from .torchvision_readers import READERS
from .voc import VOCForeground

DATASET_NAMES = ("synthetic", "cifar10", "cifar100", "flowers", "pets", "imagenet", "imnet-100", "imagenette",
                 "imagewoof", "folder")
# Reference-code spellings (DeiT's CIFAR is CIFAR-100, IMNET is ImageNet-1k); matched case-insensitively.
DATASET_ALIASES = {
    "cifar": "cifar100",
    "imnet": "imagenet",
    "imagenet-1k": "imagenet",
    "in1k": "imagenet",
    "imagenet-100": "imnet-100",
    "imnet100": "imnet-100",
    "in100": "imnet-100",
    "flowers102": "flowers",
    "oxford-pets": "pets",
    "imagefolder": "folder",
    "imagenette2": "imagenette",
    "imagewoof2": "imagewoof",
}
MASK_DATASET_NAMES = ("synthetic", "voc", "masks")  # datasets whose items carry foreground masks
SYNTHETIC_TRAIN_SAMPLES = 5000
SYNTHETIC_VAL_SAMPLES = 1000


def canonical_dataset_name(name: str) -> str:
    """``name`` in any accepted spelling -> its entry in :data:`DATASET_NAMES`."""
    key = name.strip().lower().replace("_", "-")
    key = DATASET_ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        aliases = ", ".join(f"{alias} -> {target}" for alias, target in DATASET_ALIASES.items())
        raise SarvitError(
            f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)} (case-insensitive; aliases: {aliases})"
        )
    return key


def build_dataset(
    name: str = "synthetic",
    root: Optional[Union[str, Path]] = None,
    *,
    train: bool,
    transform: Optional[Callable] = None,
    download: bool = False,
    subset_ratio: float = 1.0,
    seed: int = 0,
    **synthetic_kwargs,
) -> tuple[Dataset, int]:
    """The train or eval split of a dataset by name -> ``(dataset, num_classes)``; items are ``(image, int)``.

    Splits (train / eval): ``synthetic`` generated train / val; ``cifar10``, ``cifar100`` train / test;
    ``flowers`` train+val (2,040) / test (6,149) as in DeiT's and ViT's transfer protocol; ``pets`` trainval /
    test; ``imagenet``, ``imnet-100``, ``folder``: ``root/train/<class>/*`` / ``root/val/<class>/*``;
    ``imagenette``, ``imagewoof``: the unpacked fast.ai archive (or the folder holding it), train / val.

    Args:
        name: one of :data:`DATASET_NAMES` or an alias (``CIFAR`` = CIFAR-100, ``IMNET`` = ImageNet), any case.
        root: the dataset folder (``--data-path``); ignored by ``synthetic``.
        train: which split.
        transform: applied to each PIL image (see :func:`sarvit.data.build_transform`).
        download: let torchvision download CIFAR / Flowers / Pets into ``root``; nothing downloads otherwise.
        subset_ratio: in (0, 1]; keeps this fraction of every class of the training split (at least one image
            per class), drawn with ``seed``; the eval split is always whole, as in the paper's 25-75% runs.
        seed: seeds the subset draw only.
        **synthetic_kwargs: :class:`SyntheticObjects` arguments for ``synthetic`` (``num_samples`` defaults to
            5000 train / 1000 val; the generator seed is ``synthetic_seed``, default 0, so that every training
            seed sees the same images). ``None`` values mean "default"; other values with another dataset are
            an error.
    """
    key = canonical_dataset_name(name)
    if not 0.0 < subset_ratio <= 1.0:
        raise SarvitError(f"subset_ratio must be in (0, 1], got {subset_ratio}")
    synthetic_kwargs = {option: value for option, value in synthetic_kwargs.items() if value is not None}
    if key == "synthetic":
        dataset, num_classes = _synthetic(SyntheticObjects, train, synthetic_kwargs, transform=transform)
    else:
        if synthetic_kwargs:
            raise SarvitError(
                f"options {', '.join(sorted(synthetic_kwargs))} only apply to the synthetic dataset, got them with {key!r}"
            )
        if root is None:
            raise SarvitError(f"{key}: expected a dataset folder (--data-path), got none")
        dataset, num_classes = READERS[key](Path(root).expanduser(), train, transform, download)
    if train and subset_ratio < 1.0:
        dataset = per_class_subset(dataset, sample_targets(dataset), subset_ratio, seed)
    return dataset, num_classes


def build_mask_dataset(
    name: str = "synthetic",
    root: Optional[Union[str, Path]] = None,
    *,
    img_size: int,
    train: bool = False,
    transform: Optional[Callable] = None,
    split: str = "val",
    **synthetic_kwargs,
) -> tuple[MaskedDataset, int]:
    """A dataset with masks by name -> ``(dataset, num_classes)``; items ``(image [3, S, S], target,
    foreground [S, S] bool, valid [S, S] bool)`` with ``S = img_size`` (see :class:`~sarvit.data.masks.MaskedDataset`).

    ``synthetic``: :class:`~sarvit.data.SyntheticMasks`, drawn at ``img_size`` (``synthetic_kwargs`` as for
    :func:`build_dataset`; ``num_samples`` defaults to 1000). ``voc``: PASCAL VOC 2012 at ``root``, image list
    ``split`` (0 classes: VOC's items have no image-level class). ``masks``: your own images and binary masks,
    ``root/images`` + ``root/masks`` (:class:`~sarvit.data.FolderMasks`). ``transform`` turns the PIL image into the
    tensor without cropping (default: :func:`~sarvit.data.build_mask_transform` with ImageNet's statistics).
    """
    key = name.strip().lower().replace("_", "-")
    synthetic_kwargs = {option: value for option, value in synthetic_kwargs.items() if value is not None}
    if key == "synthetic":
        options = {"img_size": img_size, **synthetic_kwargs}
        return _synthetic(SyntheticMasks, train, options, transform=transform)
    if key not in MASK_DATASET_NAMES:
        raise SarvitError(f"expected a dataset with masks ({', '.join(MASK_DATASET_NAMES)}), got {name!r}")
    if synthetic_kwargs:
        raise SarvitError(f"options {', '.join(sorted(synthetic_kwargs))} only apply to the synthetic dataset, "
                          f"got them with {key!r}")
    if root is None:
        raise SarvitError(f"{key}: expected the data folder (--data-path), got none")
    if key == "masks":
        dataset = FolderMasks(root, img_size=img_size, transform=transform)
        return dataset, len(dataset.classes)
    return VOCForeground(root, split=split, img_size=img_size, transform=transform), 0


def _synthetic(kind: type, train: bool, options: dict, **extra) -> tuple[Dataset, int]:
    options.setdefault("num_samples", SYNTHETIC_TRAIN_SAMPLES if train else SYNTHETIC_VAL_SAMPLES)
    options["seed"] = options.pop("synthetic_seed", 0)
    try:
        dataset = kind(train=train, **options, **extra)
    except TypeError as error:  # an option SyntheticObjects does not have
        raise SarvitError(f"synthetic: unexpected option ({error})") from None
    return dataset, dataset.num_classes
