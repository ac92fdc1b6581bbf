"""Seeded per-class subsets (the paper's 25/50/75 % runs) and the labels they are drawn from."""
from __future__ import annotations

import math

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..errors import SarvitError

__all__ = ["per_class_subset", "sample_targets"]


def per_class_subset(dataset: Dataset, targets, ratio: float, seed: int) -> Subset:
    """A Subset keeping ``round(ratio * n_c)`` (>= 1) random samples of every class c, indices in dataset order.

    Deterministic in ``(targets, ratio, seed)``; independent of the global RNG.
    """
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        count = max(1, math.floor(ratio * len(members) + 0.5))
        kept.append(rng.permutation(members)[:count])
    return Subset(dataset, np.sort(np.concatenate(kept)).tolist())


def sample_targets(dataset: Dataset) -> list[int]:
    """Per-sample class labels, read from the dataset's label list without decoding any image."""
    if isinstance(dataset, ConcatDataset):
        return [label for part in dataset.datasets for label in sample_targets(part)]
    if isinstance(dataset, Subset):
        labels = sample_targets(dataset.dataset)
        return [labels[index] for index in dataset.indices]
    if hasattr(dataset, "targets"):
        return list(dataset.targets)
    raise SarvitError(f"expected a dataset with a per-sample 'targets' list, got {type(dataset).__name__}")
