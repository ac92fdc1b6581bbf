"""Shared fixtures: tiny datasets written in their real on-disk formats (``data_writers``, ``voc_tree``), and
sarvit checkpoints written by sarvit's own checkpoint writer (``write_model_checkpoint``)."""
from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image


def write_image(path: Path, seed: int, size: int = 12) -> Path:
    """A small random RGB image; the format follows the suffix (.jpg, .png)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_corrupt_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return path


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        pickle.dump(content, file)


def write_cifar10(root: Path, per_batch: int = 20) -> list[int]:
    """``root/cifar-10-batches-py``: 5 train batches + test batch + batches.meta; returns the train labels."""
    folder = root / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    train_labels = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(label) for label in rng.integers(0, 10, per_batch)]
        if name != "test_batch":
            train_labels += labels
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        _pickle(folder / name, {"batch_label": name, "labels": labels, "data": data,
                                "filenames": [f"{name}_{i}.png" for i in range(per_batch)]})
    label_names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": label_names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return train_labels


def write_cifar100(root: Path, train_size: int = 300, test_size: int = 50) -> list[int]:
    """``root/cifar-100-python``: train, test and meta (fine + coarse labels); returns the train fine labels."""
    folder = root / "cifar-100-python"
    rng = np.random.default_rng(1)
    train_labels = []
    for name, count in (("train", train_size), ("test", test_size)):
        fine = [int(label) for label in rng.integers(0, 100, count)]
        if name == "train":
            train_labels = fine
        _pickle(folder / name, {"filenames": [f"{i}.png" for i in range(count)], "batch_label": name,
                                "fine_labels": fine, "coarse_labels": [label // 5 for label in fine],
                                "data": rng.integers(0, 256, (count, 3072), dtype=np.uint8)})
    _pickle(folder / "meta", {"fine_label_names": [f"fine_{i}" for i in range(100)],
                              "coarse_label_names": [f"coarse_{i}" for i in range(20)]})
    return train_labels


def write_flowers102(root: Path, per_split: int = 4) -> dict[str, list[int]]:
    """``root/flowers-102``: jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat; returns labels (0-based) per split."""
    folder = root / "flowers-102"
    total = 3 * per_split
    labels = np.arange(total) % 5 + 1  # 1-based, as in the real imagelabels.mat
    for image_id in range(1, total + 1):
        write_image(folder / "jpg" / f"image_{image_id:05d}.jpg", image_id)
    scipy.io.savemat(folder / "imagelabels.mat", {"labels": labels[None, :].astype(np.uint8)})
    ids = np.arange(1, total + 1, dtype=np.uint16)
    split_ids = {"trnid": ids[:per_split], "valid": ids[per_split:2 * per_split], "tstid": ids[2 * per_split:]}
    scipy.io.savemat(folder / "setid.mat", {key: value[None, :] for key, value in split_ids.items()})
    return {key: [int(labels[i - 1]) - 1 for i in value] for key, value in split_ids.items()}


PET_BREEDS = ("Abyssinian", "beagle", "Bengal")


def write_pets(root: Path, per_breed: int = 4) -> dict[str, list[str]]:
    """``root/oxford-iiit-pet``: images/<Breed>_<n>.jpg, annotations/{trainval,test}.txt; returns image ids."""
    folder = root / "oxford-iiit-pet"
    splits = {"trainval": [], "test": []}
    lines = {"trainval": [], "test": []}
    for class_index, breed in enumerate(PET_BREEDS):
        species = 2 if breed.islower() else 1  # lower-case names are dogs in the real list
        for n in range(1, per_breed + 1):
            image_id = f"{breed}_{n}"
            write_image(folder / "images" / f"{image_id}.jpg", class_index * 100 + n)
            split = "trainval" if n <= per_breed // 2 else "test"
            splits[split].append(image_id)
            lines[split].append(f"{image_id} {class_index + 1} {species} {n}")
    (folder / "annotations").mkdir(parents=True)
    for split, split_lines in lines.items():
        (folder / "annotations" / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    return splits


def write_image_folder(root: Path, train_counts: dict[str, int], val_count: int = 2) -> Path:
    """``root/{train,val}/<class>/*.png``: ``train_counts[class]`` train and ``val_count`` val images per class."""
    for class_index, name in enumerate(train_counts):
        for split, count in (("train", train_counts[name]), ("val", val_count)):
            for n in range(count):
                write_image(root / split / name / f"{name}_{n}.png", class_index * 1000 + n)
    return root


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), 256 RGB entries flattened."""
    palette = []
    for label in range(256):
        red = green = blue = 0
        code = label
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        palette += [red, green, blue]
    return palette


def voc_labels(size: int = 40) -> np.ndarray:
    """A [size, size] uint8 label map: an object (label 1) in a square, a 1-px void (255) border around it."""
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[9:31, 9:31] = 255
    labels[10:30, 10:30] = 1
    return labels


def voc_objects(height: int, width: int) -> np.ndarray:
    """Two objects (labels 1, 2) of a ``height x width`` image and a void line along the first one's edge."""
    objects = np.zeros((height, width), dtype=np.uint8)
    objects[height // 4: height // 2, width // 4: 3 * width // 4] = 1
    objects[2 * height // 3:, : width // 3] = 2
    objects[height // 4 - 1, :] = 255
    return objects


def _save_palette_png(labels: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.fromarray(labels, mode="P")
    mask.putpalette(voc_palette())
    mask.save(path)


def write_voc(root: Path, ids=("2007_000033", "2007_000042"), mask_folder: str = "SegmentationObject") -> Path:
    """``root/VOCdevkit/VOC2012``: 40x40 JPEGs, :func:`voc_labels` palette PNGs in ``mask_folder``,
    ``ImageSets/Segmentation/{train,val}.txt``; returns the VOC2012 folder."""
    voc = root / "VOCdevkit" / "VOC2012"
    for index, image_id in enumerate(ids):
        write_image(voc / "JPEGImages" / f"{image_id}.jpg", index, size=40)
        _save_palette_png(voc_labels(40), voc / mask_folder / f"{image_id}.png")
    _write_lists(voc, ids)
    return voc


def write_voc_objects(root: Path, sizes=((40, 48), (36, 36), (50, 30))) -> list[str]:
    """``root/VOCdevkit/VOC2012`` with non-square random JPEGs, :func:`voc_objects` in SegmentationObject and
    their class masks (any object -> class 15) in SegmentationClass; returns the image ids."""
    voc = root / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(0)
    ids = []
    for index, (height, width) in enumerate(sizes):
        image_id = f"2007_{index:06d}"
        ids.append(image_id)
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        objects = voc_objects(height, width)
        classes = np.where(objects == 255, 255, np.where(objects > 0, 15, 0)).astype(np.uint8)
        _save_palette_png(objects, voc / "SegmentationObject" / f"{image_id}.png")
        _save_palette_png(classes, voc / "SegmentationClass" / f"{image_id}.png")
    _write_lists(voc, ids)
    return ids


def _write_lists(voc: Path, ids) -> None:
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")


@pytest.fixture(scope="session")
def data_writers() -> SimpleNamespace:
    """The writers above, for tests that build datasets on disk."""
    return SimpleNamespace(
        image=write_image, corrupt_image=write_corrupt_image, cifar10=write_cifar10, cifar100=write_cifar100,
        flowers102=write_flowers102, pets=write_pets, pet_breeds=PET_BREEDS, image_folder=write_image_folder,
        voc=write_voc, voc_objects=write_voc_objects, voc_labels=voc_labels, voc_object_labels=voc_objects,
    )


@pytest.fixture(scope="session")
def write_model_checkpoint():
    """``write(path, model, name="vit_tiny_patch16_224", **content)``: a checkpoint of ``model`` written by
    :func:`sarvit.checkpoints.write_checkpoint`, the writer real runs use."""
    from sarvit.checkpoints import write_checkpoint
    from sarvit.models import ModelSpec

    def write(path: Path, model, **content) -> Path:
        return write_checkpoint(path, model.state_dict(), ModelSpec.of(model), **content)

    return write
