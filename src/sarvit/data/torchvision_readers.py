"""Readers of datasets in torchvision's on-disk formats (CIFAR, Flowers-102, Oxford-IIIT Pets, ImageFolder; also
Imagenette and Imagewoof), with checks that name the files looked for.
``READERS[name](root, train, transform, download) -> (dataset, classes)``."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

from torch.utils.data import ConcatDataset, Dataset
from torchvision import datasets

from ..errors import SarvitError
from .imagenette import Imagenette, Imagewoof
from .loading import load_rgb_image

__all__ = ["READERS"]


# torchvision checks the md5 of every CIFAR batch and Flowers .mat file at each construction. These
# subclasses check that the files exist instead (the archive md5 is still verified by download=True), so
# copies re-packed elsewhere load, and a missing file is reported by name before torchvision is called.
class _FilePresenceCIFAR:
    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / filename).is_file() for filename, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as file:
            self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}


class _CIFAR10(_FilePresenceCIFAR, datasets.CIFAR10):
    pass


class _CIFAR100(_FilePresenceCIFAR, datasets.CIFAR100):
    pass


class _Flowers102(datasets.Flowers102):
    def _check_integrity(self) -> bool:
        mat_files = (self._file_dict["label"][0], self._file_dict["setid"][0])
        return self._images_folder.is_dir() and all((self._base_folder / name).is_file() for name in mat_files)

    @property
    def targets(self) -> list[int]:
        return self._labels


class _OxfordIIITPet(datasets.OxfordIIITPet):
    @property
    def targets(self) -> list[int]:
        return self._labels

    def __getitem__(self, index: int):
        try:
            return super().__getitem__(index)
        except OSError as error:  # torchvision opens the image itself here, with no loader= to swap in
            raise SarvitError(f"could not read image file {self._images[index]}: expected a decodable image, got {error}") from None


_READ_ERRORS = (RuntimeError, OSError, ValueError, KeyError, IndexError, EOFError, pickle.UnpicklingError)


def _torchvision_dataset(key: str, root: Path, folder: str, expected: list[str], download: bool, factory):
    """Check ``root/folder/<expected>`` (unless downloading), then build, turning torchvision errors into ours."""
    if root.name == folder:  # --data-path pointed inside the dataset folder: step out of it
        root = root.parent
    if not download:
        missing = [name for name in expected if not (root / folder / name).exists()]
        if missing:
            found = "the folder does not exist" if not (root / folder).is_dir() else f"not found: {', '.join(missing)}"
            raise SarvitError(
                f"{key}: expected torchvision's files under {root / folder} ({', '.join(expected)}), "
                f"{found}; pass --download or fix --data-path"
            )
    try:
        return factory(str(root))
    except SarvitError:
        raise
    except _READ_ERRORS as error:
        action = "download or read" if download else "read"
        raise SarvitError(f"{key}: could not {action} the dataset files under {root / folder}: {error}") from None


def _cifar10(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
    expected = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    dataset = _torchvision_dataset(
        "cifar10", root, "cifar-10-batches-py", expected, download,
        lambda path: _CIFAR10(path, train=train, transform=transform, download=download),
    )
    return dataset, 10


def _cifar100(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
    dataset = _torchvision_dataset(
        "cifar100", root, "cifar-100-python", ["train", "test", "meta"], download,
        lambda path: _CIFAR100(path, train=train, transform=transform, download=download),
    )
    return dataset, 100


def _flowers(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
    def build(path: str) -> Dataset:
        def split(name: str) -> Dataset:
            return _Flowers102(path, split=name, transform=transform, download=download, loader=load_rgb_image)

        # Train on train+val (10 + 10 images per class), test on test: the transfer protocol of ViT/DeiT.
        return ConcatDataset([split("train"), split("val")]) if train else split("test")

    dataset = _torchvision_dataset(
        "flowers", root, "flowers-102", ["jpg", "imagelabels.mat", "setid.mat"], download, build
    )
    return dataset, 102


def _pets(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
    split = "trainval" if train else "test"
    dataset = _torchvision_dataset(
        "pets", root, "oxford-iiit-pet", ["images", f"annotations/{split}.txt"], download,
        lambda path: _OxfordIIITPet(path, split=split, transform=transform, download=download),
    )
    return dataset, 37


def _image_folder(key: str) -> Callable:
    def build(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
        if download:
            raise SarvitError(f"{key}: cannot be downloaded; expected an existing ImageFolder tree at {root}")
        split = "train" if train else "val"
        split_dir = root / split
        layout = f"{root}/{{train,val}}/<class name>/<image>"
        if not split_dir.is_dir():
            raise SarvitError(f"{key}: expected the ImageFolder layout {layout}, {split_dir} not found; fix --data-path")
        try:
            dataset = datasets.ImageFolder(str(split_dir), transform=transform, loader=load_rgb_image)
        except (FileNotFoundError, ValueError) as error:  # no class folders, or a class without images
            raise SarvitError(f"{key}: expected the ImageFolder layout {layout}; {error}") from None
        train_dir = root / "train"
        if not train and train_dir.is_dir():  # labels are folder indices: both splits must list the same classes
            train_classes = sorted(entry.name for entry in train_dir.iterdir() if entry.is_dir())
            if dataset.classes != train_classes:
                missing = sorted(set(train_classes) - set(dataset.classes))
                extra = sorted(set(dataset.classes) - set(train_classes))
                raise SarvitError(
                    f"{key}: expected {split_dir} to hold the same class folders as {train_dir}; "
                    f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, extra {extra[:5]}{'...' if len(extra) > 5 else ''}"
                )
        return dataset, len(dataset.classes)

    return build


def _wordnet_subset(reader: type) -> Callable:
    """Imagenette / Imagewoof (:mod:`sarvit.data.imagenette`): ten WordNet-id folders; Imagenette downloads
    through torchvision, Imagewoof does not download."""
    def build(root: Path, train: bool, transform, download: bool) -> tuple[Dataset, int]:
        if download and reader is not Imagenette:
            raise SarvitError(f"{reader.name}: sarvit does not download it; unpack e.g. "
                              f"https://s3.amazonaws.com/fast-ai-imageclas/{reader.archives[1]}.tgz into --data-path")
        dataset = reader(root, train=train, transform=transform, **({"download": True} if download else {}))
        return dataset, len(dataset.classes)

    return build


READERS = {
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "flowers": _flowers,
    "pets": _pets,
    "imagenet": _image_folder("imagenet"),
    "imnet-100": _image_folder("imnet-100"),
    "folder": _image_folder("folder"),
    "imagenette": _wordnet_subset(Imagenette),
    "imagewoof": _wordnet_subset(Imagewoof),
}
