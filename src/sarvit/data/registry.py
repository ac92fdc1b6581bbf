"""Datasets by name (DeiT's ``--data-set``), with on-disk checks that say what was looked for."""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision import datasets

from ..errors import SarvitError
from .loading import load_rgb_image
from .synthetic import SyntheticObjects

DATASET_NAMES = ("synthetic", "cifar10", "cifar100", "flowers", "pets", "imagenet", "imnet-100", "folder")
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
}
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
    test; ``imagenet``, ``imnet-100``, ``folder``: ``root/train/<class>/*`` / ``root/val/<class>/*``.

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
        dataset, num_classes = _synthetic(train, transform, synthetic_kwargs)
    else:
        if synthetic_kwargs:
            raise SarvitError(
                f"options {', '.join(sorted(synthetic_kwargs))} only apply to the synthetic dataset, got them with {key!r}"
            )
        if root is None:
            raise SarvitError(f"{key}: expected a dataset folder (--data-path), got none")
        dataset, num_classes = _BUILDERS[key](Path(root).expanduser(), train, transform, download)
    if train and subset_ratio < 1.0:
        dataset = per_class_subset(dataset, sample_targets(dataset), subset_ratio, seed)
    return dataset, num_classes


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


def _synthetic(train: bool, transform, options: dict) -> tuple[Dataset, int]:
    options.setdefault("num_samples", SYNTHETIC_TRAIN_SAMPLES if train else SYNTHETIC_VAL_SAMPLES)
    options["seed"] = options.pop("synthetic_seed", 0)
    try:
        dataset = SyntheticObjects(train=train, transform=transform, **options)
    except TypeError as error:  # an option SyntheticObjects does not have
        raise SarvitError(f"synthetic: unexpected option ({error})") from None
    return dataset, dataset.num_classes


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


_BUILDERS = {
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "flowers": _flowers,
    "pets": _pets,
    "imagenet": _image_folder("imagenet"),
    "imnet-100": _image_folder("imnet-100"),
    "folder": _image_folder("folder"),
}
