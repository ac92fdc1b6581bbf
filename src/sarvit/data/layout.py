"""The kind of data set a folder holds, read from its layout (``--data-path`` given without ``--data-set``)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..errors import SarvitError
from .imagenette import Imagenette, Imagewoof

__all__ = ["infer_dataset_name"]

# torchvision's folder of each format, as downloaded or unpacked
_TORCHVISION_FOLDERS = {"cifar-10-batches-py": "cifar10", "cifar-100-python": "cifar100", "flowers-102": "flowers",
                        "oxford-iiit-pet": "pets"}


def infer_dataset_name(root: Union[str, Path]) -> str:
    """``"cifar10"``, ``"cifar100"``, ``"flowers"``, ``"pets"``, ``"imagenette"``, ``"imagewoof"``, ``"voc"`` or
    ``"folder"`` (``root/{train,val}/<class>/``) or ``"masks"`` (``root/images`` + ``root/masks``), from what ``root`` holds; anything else is a :class:`SarvitError`.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for split in ("train", "val"): (root / split / "cat").mkdir(parents=True)
        >>> infer_dataset_name(root)
        'folder'
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SarvitError(f"--data-path {root}: expected a data set folder, it does not exist")
    for folder, name in _TORCHVISION_FOLDERS.items():
        if root.name == folder or (root / folder).is_dir():
            return name
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "masks"
    if any((candidate / "JPEGImages").is_dir() for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012")):
        return "voc"
    for reader in (Imagenette, Imagewoof):
        for top in (root, *(root / archive for archive in reader.archives)):
            train = top / "train"
            if train.is_dir() and {entry.name for entry in train.iterdir() if entry.is_dir()} == set(reader.class_names):
                return reader.name
    if all((root / split).is_dir() and any(entry.is_dir() for entry in (root / split).iterdir())
           for split in ("train", "val")):
        return "folder"
    raise SarvitError(
        f"--data-path {root}: cannot tell the data set from its layout (expected train/ and val/ class folders, "
        f"{', '.join(f'{folder}/' for folder in _TORCHVISION_FOLDERS)} or a VOC2012 folder); add --data-set NAME")
