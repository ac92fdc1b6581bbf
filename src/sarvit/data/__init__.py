"""Datasets by name, pretext tasks, DeiT's transforms, the built-in synthetic object dataset and PASCAL VOC
foreground masks.

Two kinds of dataset come from the registry: :func:`build_dataset` gives ``(image, target)`` items,
:func:`build_mask_dataset` (``synthetic``, ``voc``) gives ``(image, target, foreground, valid)``;
:func:`pretext_dataset` turns either into a self-supervised task (rotation).
"""
from .checks import BadImages, check_images, dataset_files
from .folder_masks import FolderMasks
from .layout import infer_dataset_name
from .loading import load_rgb_image
from .masks import NO_TARGET, MaskedDataset
from .pretext import PRETEXTS, ROTATIONS, RotationPretext, pretext_dataset, rotate
from .registry import (DATASET_ALIASES, DATASET_NAMES, MASK_DATASET_NAMES, build_dataset, build_mask_dataset,
                       canonical_dataset_name)
from .subsets import per_class_subset, sample_targets
from .synthetic import SHAPES, SyntheticMasks, SyntheticObjects
from .transforms import build_mask_transform, build_transform
from .voc import VOCForeground, find_voc2012

__all__ = [
    "DATASET_ALIASES",
    "FolderMasks",
    "BadImages",
    "check_images",
    "dataset_files",
    "infer_dataset_name",
    "DATASET_NAMES",
    "MASK_DATASET_NAMES",
    "NO_TARGET",
    "PRETEXTS",
    "ROTATIONS",
    "RotationPretext",
    "SHAPES",
    "MaskedDataset",
    "SyntheticMasks",
    "SyntheticObjects",
    "VOCForeground",
    "build_dataset",
    "build_mask_dataset",
    "build_mask_transform",
    "build_transform",
    "canonical_dataset_name",
    "find_voc2012",
    "load_rgb_image",
    "per_class_subset",
    "pretext_dataset",
    "rotate",
    "sample_targets",
]
