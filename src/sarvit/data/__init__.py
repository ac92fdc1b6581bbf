"""Datasets by name, DeiT's transforms, the built-in synthetic object dataset and PASCAL VOC foreground masks."""
from .loading import load_rgb_image
from .registry import DATASET_ALIASES, DATASET_NAMES, build_dataset, canonical_dataset_name, per_class_subset, sample_targets
from .synthetic import SHAPES, SyntheticObjects
from .transforms import build_transform
from .voc import VOCForeground, find_voc2012

__all__ = [
    "DATASET_ALIASES",
    "DATASET_NAMES",
    "SHAPES",
    "SyntheticObjects",
    "VOCForeground",
    "build_dataset",
    "build_transform",
    "canonical_dataset_name",
    "find_voc2012",
    "load_rgb_image",
    "per_class_subset",
    "sample_targets",
]
