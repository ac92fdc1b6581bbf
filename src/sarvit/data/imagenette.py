"""Imagenette and Imagewoof (fast.ai's 10-class ImageNet subsets), read from their public folder layout.

Layout (as unpacked from ``imagenette2.tgz``, ``imagenette2-320.tgz``, ``imagenette2-160.tgz`` and the
``imagewoof2*`` archives)::

    imagenette2-320/train/n01440764/*.JPEG
    imagenette2-320/val/n01440764/*.JPEG

``--data-path`` names the unpacked archive folder or the folder holding it. Imagenette's images in an archive
folder are listed by ``torchvision.datasets.Imagenette`` (which also downloads it); a tree of the same shape under
another name, and Imagewoof (torchvision has no reader for it), as ``torchvision.datasets.ImageFolder`` lists a
tree. Either way the ten WordNet-id folders are checked first, images are decoded by sarvit's loader (which names
a broken file), labels are the indices of the sorted WordNet ids (as torchvision and fast.ai number them),
``dataset.classes`` holds one readable name per class and ``dataset.wnids`` the folder names, as in
torchvision's ``ImageNet``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

from torch.utils.data import Dataset
from torchvision import datasets

from ..errors import SarvitError
from .loading import IMAGE_SUFFIXES, load_rgb_image

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


class _WordNetSubset(Dataset):
    """``root/{train,val}/<wnid>/<image>`` with exactly the subset's ten WordNet ids; items ``(image, int)``.

    ``root`` is the unpacked folder (e.g. ``imagenette2-320``) or the folder holding it. ``samples``:
    ``(path, label)`` per image (listed by torchvision), ``targets`` their labels, ``root`` the split's folder.
    """

    name: str
    archives: tuple[str, ...]  # folder names of the public archives, full size first
    class_names: dict[str, str]

    def __init__(self, root: Union[str, Path], train: bool = True, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None):
        self.split = "train" if train else "val"
        self.transform, self.target_transform = transform, target_transform
        folder = self._locate(Path(root).expanduser())
        self._check_classes(folder / self.split)
        self.root = str(folder / self.split)
        self.wnids = sorted(self.class_names)
        self.wnid_to_idx = {wnid: index for index, wnid in enumerate(self.wnids)}
        self.classes = [self.class_names[wnid] for wnid in self.wnids]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        try:
            self.samples = self._samples(folder)
        except FileNotFoundError as error:  # a class folder without images
            raise SarvitError(f"{self.name}: expected images in every class folder; {error}") from None
        self.targets = [label for _, label in self.samples]

    def _samples(self, folder: Path) -> list[tuple[str, int]]:
        """``(path, label)`` of every image of the split, as torchvision's ImageFolder lists them."""
        return datasets.folder.make_dataset(self.root, self.wnid_to_idx, extensions=IMAGE_SUFFIXES)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        """``(image, label)``, decoded by :func:`~sarvit.data.loading.load_rgb_image` (it names a broken file)."""
        path, label = self.samples[index]
        image = load_rgb_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label if self.target_transform is None else self.target_transform(label)

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

    def _check_classes(self, directory: Path) -> None:
        """Every one of the subset's ten WordNet ids is a folder of ``directory``, and nothing else is."""
        present = {entry.name for entry in directory.iterdir() if entry.is_dir()}
        missing, extra = sorted(set(self.class_names) - present), sorted(present - set(self.class_names))
        if missing or extra:
            raise SarvitError(f"{self.name}: expected the {len(self.class_names)} {self.name} WordNet-id folders in "
                              f"{directory}; missing {missing or 'none'}, unexpected {extra or 'none'}")


# torchvision's archive folder names and its size names: imagenette2 -> "full", imagenette2-320 -> "320px", ...
_TORCHVISION_SIZES = {Path(url).stem: size for size, (url, _) in datasets.Imagenette._ARCHIVES.items()}


class Imagenette(_WordNetSubset):
    """Imagenette: ten easily told apart ImageNet classes (tench, English springer, ..., parachute).

    An unpacked archive folder is listed by ``torchvision.datasets.Imagenette``; ``download=True`` has it fetch
    and unpack ``imagenette2-320`` into ``root`` first (nothing is fetched when an archive folder is there).

    Example:
        >>> train_set = Imagenette("~/data/imagenette2-320", train=True)  # doctest: +SKIP
        >>> train_set.classes[0], train_set.wnids[0]  # doctest: +SKIP
        ('tench', 'n01440764')
    """

    name = "imagenette"
    archives = tuple(_TORCHVISION_SIZES)
    class_names = IMAGENETTE_CLASSES
    download_size = "320px"

    def __init__(self, root: Union[str, Path], train: bool = True, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, download: bool = False):
        root = Path(root).expanduser()
        if download and not any((root / archive).is_dir() for archive in self.archives):
            datasets.Imagenette(root, "train" if train else "val", self.download_size, download=True)
        super().__init__(root, train, transform, target_transform)

    def _samples(self, folder: Path) -> list[tuple[str, int]]:
        if folder.name not in _TORCHVISION_SIZES:  # the same tree under another name: not a layout torchvision reads
            return super()._samples(folder)
        return datasets.Imagenette(folder.parent, self.split, _TORCHVISION_SIZES[folder.name])._samples


class Imagewoof(_WordNetSubset):
    """Imagewoof: ten hard-to-tell-apart ImageNet dog breeds (Shih-Tzu, ..., dingo)."""

    name = "imagewoof"
    archives = ("imagewoof2", "imagewoof2-320", "imagewoof2-160")
    class_names = IMAGEWOOF_CLASSES
