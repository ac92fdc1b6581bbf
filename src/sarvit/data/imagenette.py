"""Imagenette and Imagewoof (fast.ai's 10-class ImageNet subsets), read from their public folder layout.

Layout (as unpacked from ``imagenette2.tgz``, ``imagenette2-320.tgz``, ``imagenette2-160.tgz`` and the
``imagewoof2*`` archives)::

    imagenette2-320/train/n01440764/*.JPEG
    imagenette2-320/val/n01440764/*.JPEG

Labels are the indices of the sorted WordNet ids (as torchvision's ``ImageFolder`` and fast.ai number them);
``dataset.classes`` holds the readable names and ``dataset.wnids`` the folder names, as in torchvision's
``ImageNet``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

from torchvision import datasets

from ..errors import SarvitError
from .loading import load_rgb_image

__all__ = ["IMAGENETTE_CLASSES", "IMAGEWOOF_CLASSES", "Imagenette", "Imagewoof"]

IMAGENETTE_CLASSES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck",
    "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute",
}
IMAGEWOOF_CLASSES = {
    "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
    "n02089973": "English foxhound", "n02093754": "Border terrier", "n02096294": "Australian terrier",
    "n02099601": "golden retriever", "n02105641": "Old English sheepdog", "n02111889": "Samoyed",
    "n02115641": "dingo",
}


class _WordNetSubset(datasets.ImageFolder):
    """``root/{train,val}/<wnid>/<image>`` with exactly the subset's ten WordNet ids; items ``(image, int)``.

    ``root`` is the unpacked folder (e.g. ``imagenette2-320``) or the folder holding it.
    """

    name: str
    archives: tuple[str, ...]  # folder names of the public archives, full size first
    class_names: dict[str, str]

    def __init__(self, root: Union[str, Path], train: bool = True, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None):
        self.split = "train" if train else "val"
        folder = self._locate(Path(root).expanduser())
        try:
            super().__init__(str(folder / self.split), transform=transform, target_transform=target_transform,
                             loader=load_rgb_image)
        except FileNotFoundError as error:  # a class folder without images
            raise SarvitError(f"{self.name}: expected images in every class folder; {error}") from None
        self.wnids, self.wnid_to_idx = self.classes, self.class_to_idx
        self.classes = [self.class_names[wnid] for wnid in self.wnids]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}

    def _layout(self, root: Path) -> str:
        example = next(iter(self.class_names))
        return f"{root}/[{'|'.join(self.archives)}/]{{train,val}}/<WordNet id, e.g. {example}>/*.JPEG"

    def _locate(self, root: Path) -> Path:
        """The folder holding ``train/`` and ``val/``: ``root`` itself or one unpacked archive inside it."""
        if (root / self.split).is_dir():
            return root
        found = [root / archive for archive in self.archives if (root / archive / self.split).is_dir()]
        if len(found) > 1:
            raise SarvitError(f"{self.name}: expected one unpacked archive under {root}, found "
                              f"{', '.join(path.name for path in found)}; point --data-path at the one to use")
        if not found:
            raise SarvitError(f"{self.name}: expected the layout {self._layout(root)}, found no {self.split}/ "
                              f"folder; unpack e.g. https://s3.amazonaws.com/fast-ai-imageclas/{self.archives[1]}.tgz "
                              "there or fix --data-path")
        return found[0]

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        """The subset's ten WordNet ids, sorted; every one must be a folder of ``directory`` and nothing else."""
        present = {entry.name for entry in Path(directory).iterdir() if entry.is_dir()}
        missing, extra = sorted(set(self.class_names) - present), sorted(present - set(self.class_names))
        if missing or extra:
            raise SarvitError(f"{self.name}: expected the {len(self.class_names)} {self.name} WordNet-id folders in "
                              f"{directory}; missing {missing or 'none'}, unexpected {extra or 'none'}")
        wnids = sorted(self.class_names)
        return wnids, {wnid: index for index, wnid in enumerate(wnids)}


class Imagenette(_WordNetSubset):
    """Imagenette: ten easily told apart ImageNet classes (tench, English springer, ..., parachute).

    Example:
        >>> train_set = Imagenette("~/data/imagenette2-320", train=True)  # doctest: +SKIP
        >>> train_set.classes[0], train_set.wnids[0]  # doctest: +SKIP
        ('tench', 'n01440764')
    """

    name = "imagenette"
    archives = ("imagenette2", "imagenette2-320", "imagenette2-160")
    class_names = IMAGENETTE_CLASSES


class Imagewoof(_WordNetSubset):
    """Imagewoof: ten hard-to-tell-apart ImageNet dog breeds (Shih-Tzu, ..., dingo)."""

    name = "imagewoof"
    archives = ("imagewoof2", "imagewoof2-320", "imagewoof2-160")
    class_names = IMAGEWOOF_CLASSES
