"""What the analysis commands feed a model: datasets by name (with masks or without), image files, loaders."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import Normalize

from ..data import (MASK_DATASET_NAMES, build_dataset, build_mask_dataset, build_transform, infer_dataset_name,
                    load_rgb_image)
from ..errors import SarvitError

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "model_image_size", "mask_dataset", "image_dataset", "image_files",
           "dataset_name", "image_ids", "input_normalization", "png_names", "limit", "make_loader"]

from ..data.loading import IMAGE_SUFFIXES  # noqa: E402 (one list of image suffixes)


def model_image_size(model: nn.Module, free_size: Optional[int] = None) -> int:
    """The square input side the model expects (its ``patch_embed.img_size``); ``free_size`` for a model that
    takes any size (PVT-v2's convolutional stem): ``--input-size``, else the size the run trained at."""
    size = getattr(model.patch_embed, "img_size", None)
    if size is None and free_size is not None:
        return int(free_size)
    if size is None:
        raise SarvitError("the model takes any input size and its weights do not say which it was trained at; "
                          "pass --input-size")
    if size[0] != size[1]:
        raise SarvitError(f"analysis expects a square input, the model takes {tuple(size)}")
    return int(size[0])


def limit(dataset: Dataset, count: Optional[int]) -> Dataset:
    """The first ``count`` items of ``dataset`` (all of them for ``None``)."""
    if count is None or count >= len(dataset):
        return dataset
    if count < 1:
        raise SarvitError(f"--num-samples: expected a positive number, got {count}")
    return Subset(dataset, range(count))


def dataset_name(data_set: Optional[str], data_path: Optional[str]) -> str:
    """The ``--data-set`` asked for: read from the folder's layout when only a path is given (VOC, your own
    ``images/`` + ``masks/``, a classification set), ``synthetic`` when neither."""
    if data_set is None:
        return infer_dataset_name(data_path) if data_path else "synthetic"
    return data_set.strip().lower().replace("_", "-")


def mask_dataset(data_set: Optional[str], data_path: Optional[str], *, img_size: int, num_classes: int, split: str,
                 num_samples: Optional[int], seed: int, default_samples: int) -> tuple[Dataset, str]:
    """A dataset with masks from the registry (``voc`` when only a path is given, else ``synthetic``), items
    ``(image, target, foreground, valid)``; returns ``(dataset, description)``."""
    name = dataset_name(data_set, data_path)
    if name not in MASK_DATASET_NAMES:
        raise SarvitError(f"--data-set: expected one of {', '.join(MASK_DATASET_NAMES)} (datasets with masks), "
                          f"got {data_set!r}")
    if name == "voc":
        if not data_path:
            raise SarvitError("--data-set voc: expected the VOC 2012 folder in --data-path (alias --voc_path)")
        dataset, _ = build_mask_dataset("voc", data_path, img_size=img_size, split=split)
        return limit(dataset, num_samples), f"voc ({split}) at {dataset.voc_dir}"
    if name == "masks":
        if not data_path:
            raise SarvitError("--data-set masks: expected the folder holding images/ and masks/ in --data-path")
        dataset, _ = build_mask_dataset("masks", data_path, img_size=img_size)
        return limit(dataset, num_samples), f"images with masks at {data_path}"
    count = num_samples or default_samples
    classes = num_classes if 2 <= num_classes <= 12 else 10  # one class per shape; any count draws the same scenes
    dataset, _ = build_mask_dataset("synthetic", img_size=img_size, num_samples=count, num_classes=classes,
                                    synthetic_seed=seed)
    return dataset, f"synthetic (val, {count} images, seed {seed})"


def image_dataset(data_set: Optional[str], data_path: Optional[str], *, img_size: int, num_classes: int, split: str,
                  num_samples: Optional[int], seed: int, default_samples: int) -> tuple[Dataset, str]:
    """Any dataset by name (``analyze`` needs only the images, the first element of each item)."""
    name = dataset_name(data_set, data_path)
    if name in MASK_DATASET_NAMES:
        return mask_dataset(data_set, data_path, img_size=img_size, num_classes=num_classes, split=split,
                            num_samples=num_samples, seed=seed, default_samples=default_samples)
    dataset, _ = build_dataset(name, data_path, train=False, transform=build_transform(False, img_size))
    return limit(dataset, num_samples), f"{name} (eval split) at {data_path}"


def image_ids(dataset: Dataset) -> Optional[list[str]]:
    """The VOC image ids of the items (through a Subset), or None for datasets without ids."""
    if isinstance(dataset, Subset):
        ids = image_ids(dataset.dataset)
        return None if ids is None else [ids[index] for index in dataset.indices]
    return getattr(dataset, "image_ids", None)


def input_normalization(dataset: Dataset) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of the Normalize step in the dataset's transform (to draw its images as they were)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    for step in getattr(dataset.transform, "transforms", [dataset.transform]):
        if isinstance(step, Normalize):
            return tuple(step.mean), tuple(step.std)
    raise SarvitError(f"{type(dataset).__name__}: expected a transform ending in Normalize(mean, std)")


def image_files(paths: list[str]) -> list[Path]:
    """Image files named directly or found (recursively, sorted) in the named folders."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise SarvitError(f"--test-dir: expected image files ({', '.join(IMAGE_SUFFIXES)}) in {path}, found none")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise SarvitError(f"--test-dir: expected an image file or a folder, {path} does not exist")
    return files


def png_names(files: list[Path]) -> list[str]:
    """``<stem>_attention.png`` per file; repeated stems get their position prepended."""
    stems = [file.stem for file in files]
    return [
        f"{index:04d}_{stem}_attention.png" if stems.count(stem) > 1 else f"{stem}_attention.png"
        for index, stem in enumerate(stems)
    ]


class ImageFiles(Dataset):
    """Image files as model inputs: items ``transform(image)`` (default: evaluation's resize of the shorter side
    and centre crop, so a photo keeps its aspect ratio)."""

    def __init__(self, files: list[Path], img_size: int, transform: Optional[Callable] = None) -> None:
        self.files = list(files)
        self.transform = transform if transform is not None else build_transform(False, img_size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb_image(self.files[index]))


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device) -> DataLoader:
    if batch_size < 1:
        raise SarvitError(f"--batch-size: expected a positive number, got {batch_size}")
    from ..train.build import worker_count  # --num-workers is capped as in training

    workers = worker_count(num_workers, device)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda")
