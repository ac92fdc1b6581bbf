"""Self-supervised pretext tasks: a labelled (or unlabelled) data set turned into one whose labels need no
annotation. The ARViT thesis (§4.1) pre-trains every model on rotation estimation before fine-tuning.

Rotation (Gidaris et al., "Unsupervised Representation Learning by Predicting Image Rotations", ICLR 2018):
each image is rotated by ``k * 90`` degrees counter-clockwise and labelled ``k`` (0, 1, 2, 3). The thesis
does not say how rotations are drawn; sarvit follows RotNet, which found showing all four rotations of every
image best: the wrapped set holds every image four times (item ``4 i + k`` is image ``i`` rotated by ``k``),
so one epoch sees each image in all four rotations and the evaluation set scores every image in every
rotation, with nothing left to chance. The data set's own labels (and masks) are dropped.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..errors import SarvitError

__all__ = ["PRETEXTS", "ROTATIONS", "RotationPretext", "pretext_dataset", "rotate"]

ROTATIONS = 4  # 0, 90, 180, 270 degrees: the pretext's class count
PRETEXTS = ("rotation",)


def rotate(image: torch.Tensor, k: int) -> torch.Tensor:
    """``image [..., H, W]`` rotated by ``k * 90`` degrees counter-clockwise, exactly (a permutation of pixels).

    A non-square image is first cropped to its centred square (side ``min(H, W)``), so that all four
    rotations have the shape a model with a fixed input size expects.
    """
    if not isinstance(image, torch.Tensor) or image.dim() < 2:
        raise SarvitError(f"rotation pretext: expected an image tensor [..., H, W] (give the data set a transform "
                          f"that makes tensors), got {type(image).__name__}")
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[..., top:top + side, left:left + side]
    return torch.rot90(square, k % ROTATIONS, dims=(-2, -1))


class RotationPretext(Dataset):
    """Every image of ``dataset`` in its four rotations, labelled by the rotation: item ``4 i + k`` is
    ``(rotate(image_i, k), k)`` with ``image_i`` the first element of ``dataset[i]`` (a tensor ``[C, H, W]``).

    Example:
        >>> train_set = [(torch.zeros(3, 2, 2), 0), (torch.eye(2).expand(3, 2, 2), 1)]
        >>> rotations = RotationPretext(train_set)
        >>> image, k = rotations[7]   # image 1 of train_set, rotated by 3 * 90 degrees
        >>> k, image[0].tolist(), len(rotations) == 4 * len(train_set)
        (3, [[0.0, 1.0], [1.0, 0.0]], True)
    """

    num_classes = ROTATIONS

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return ROTATIONS * len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"rotation pretext: index {index} outside 0..{len(self) - 1}")
        source, k = divmod(index, ROTATIONS)
        item = self.dataset[source]
        image = item[0] if isinstance(item, (tuple, list)) else item
        return rotate(image, k), k


def pretext_dataset(name: str, dataset: Dataset) -> tuple[Dataset, int]:
    """``dataset`` wrapped for the pretext task ``name`` -> ``(wrapped, num_classes)``."""
    if name != "rotation":
        raise SarvitError(f"unknown pretext task {name!r}: expected one of {', '.join(PRETEXTS)}")
    return RotationPretext(dataset), ROTATIONS
