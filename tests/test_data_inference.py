"""No silent fallback to the synthetic set: a --data-path alone is read from its layout, or refused in one line;
your own images + binary masks (0/1 and 0/255, any size), scored against a hand-computed Jaccard; a VOC folder of
0/255 masks is refused naming its first file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sarvit import SarvitError
from sarvit.data import FolderMasks, build_mask_dataset, infer_dataset_name
from sarvit.data.voc import VOCForeground
from sarvit.metrics import AttentionJaccard
from sarvit.train.config import resolve_config


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def test_layouts_are_recognised(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "tree" / split / "cat").mkdir(parents=True)
    (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "pets" / "oxford-iiit-pet").mkdir(parents=True)
    (tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages").mkdir(parents=True)
    (tmp_path / "own" / "images").mkdir(parents=True)
    (tmp_path / "own" / "masks").mkdir(parents=True)
    found = {name: infer_dataset_name(tmp_path / name) for name in ("tree", "cifar", "pets", "voc", "own")}
    assert found == {"tree": "folder", "cifar": "cifar10", "pets": "pets", "voc": "voc", "own": "masks"}
    (tmp_path / "unknown" / "stuff").mkdir(parents=True)
    with pytest.raises(SarvitError, match="cannot tell the data set from its layout.*add --data-set"):
        infer_dataset_name(tmp_path / "unknown")


def test_train_with_a_data_path_alone_uses_the_folder_not_the_synthetic_set(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            write_png(tmp_path / split / cls / "0.png", np.zeros((8, 8, 3), np.uint8))
    config = resolve_config({"data_path": str(tmp_path), "device": "cpu", "epochs": 1})
    assert config["data_set"] == "folder"
    with pytest.raises(SarvitError, match="holds PASCAL VOC"):
        (tmp_path / "voc" / "JPEGImages").mkdir(parents=True)
        resolve_config({"data_path": str(tmp_path / "voc"), "device": "cpu"})


def own_masks(root: Path) -> Path:
    """Two images with their masks: 8x8 with a 0/1 mask, 16x16 with a 0/255 mask (an ImageFolder tree)."""
    small = np.zeros((8, 8), np.uint8)
    small[:4, :4] = 1
    small[4:6, :4] = 1   # 24 foreground pixels, 16 of them in the top-left patch
    large = np.zeros((16, 16), np.uint8)
    large[:8, :8] = 255  # resized to 8x8: exactly the top-left patch
    write_png(root / "images" / "cats" / "small.png", np.full((8, 8, 3), 90, np.uint8))
    write_png(root / "images" / "dogs" / "large.jpg", np.full((16, 16, 3), 30, np.uint8))
    write_png(root / "masks" / "cats" / "small.png", small)
    write_png(root / "masks" / "dogs" / "large.png", large)
    return root


def test_own_masks_score_against_a_hand_computed_jaccard(tmp_path):
    dataset, classes = build_mask_dataset("masks", own_masks(tmp_path), img_size=8)
    assert classes == 2 and dataset.image_ids == ["cats/small", "dogs/large"]
    items = [dataset[i] for i in range(2)]
    assert [item[1] for item in items] == [0, 1] and all(item[3].all() for item in items)
    assert [int(item[2].sum()) for item in items] == [24, 16]
    # one head attending to the top-left of a 2x2 patch grid: its 4x4 pixels are the predicted foreground
    attention = torch.zeros(2, 1, 2, 2)
    attention[:, 0, 0, 0] = 1.0
    metric = AttentionJaccard(num_heads=1)
    metric.update(attention, torch.stack([item[2] for item in items]), torch.stack([item[3] for item in items]))
    expected = (16 / 24 + 16 / 16) / 2
    assert metric.compute()["jaccard"] == pytest.approx(expected)


def test_own_masks_without_foreground_or_not_binary_are_refused(tmp_path):
    root = own_masks(tmp_path)
    for mask in sorted((root / "masks").rglob("*.png")):
        write_png(mask, np.zeros((8, 8), np.uint8))
    with pytest.raises(SarvitError, match=r"no mask .* marks any foreground \(every pixel 0, first .*cats/small.png"):
        FolderMasks(root, img_size=8)
    write_png(root / "masks" / "cats" / "small.png", np.arange(64, dtype=np.uint8).reshape(8, 8))
    with pytest.raises(SarvitError, match="expected a binary mask .*small.png"):
        FolderMasks(root, img_size=8)[0]


def voc_tree(root: Path, masks: dict[str, np.ndarray]) -> Path:
    voc = root / "VOC2012"
    for name, labels in masks.items():
        write_png(voc / "JPEGImages" / f"{name}.jpg", np.zeros((*labels.shape, 3), np.uint8))
        write_png(voc / "SegmentationObject" / f"{name}.png", labels, "L")
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{name}\n" for name in masks))
    return voc


def test_voc_labels_other_than_one_are_foreground_and_void_is_neither(tmp_path):
    labels = np.zeros((8, 8), np.uint8)
    labels[:2] = 7
    labels[2:4] = 15
    labels[4, :3] = 255
    dataset = VOCForeground(voc_tree(tmp_path, {"a": labels}), img_size=8)
    _, _, foreground, valid = dataset[0]
    assert int(foreground.sum()) == 32 and int((~valid).sum()) == 3 and not (foreground & ~valid).any()


def test_a_voc_mask_whose_objects_are_all_void_is_refused_naming_it(tmp_path):
    good = np.zeros((8, 8), np.uint8)
    good[:2] = 1
    binary = np.zeros((8, 8), np.uint8)
    binary[:4] = 255  # a 0/255 mask saved into a VOC layout: every object pixel reads as void
    voc = voc_tree(tmp_path, {"a": good, "b": binary})
    with pytest.raises(SarvitError, match=r"SegmentationObject/b.png holds no object label.*--data-set masks"):
        VOCForeground(voc, img_size=8)


def test_every_folder_reader_takes_the_same_image_files(tmp_path):
    """The survey's count, ImageFolder's images, the masks set's and --test-dir's: one list of suffixes (a .ppm
    is an image to all of them, a .gif and a .txt to none)."""
    from torchvision.datasets import ImageFolder

    from sarvit.analysis.inputs import image_files
    from sarvit.data.survey import survey

    pixels = np.zeros((8, 8, 3), np.uint8)
    for tree in ("folder/train/cat", "masks/images/cat"):
        for name in ("a.png", "b.ppm", "c.gif"):
            write_png(tmp_path / tree / name, pixels)
        (tmp_path / tree / "notes.txt").write_text("not an image")
    for name in ("a", "b", "c"):
        write_png(tmp_path / "masks/masks/cat" / f"{name}.png", np.full((8, 8), 255, np.uint8))
    assert survey("folder", str(tmp_path / "folder")).images == 2
    assert len(ImageFolder(str(tmp_path / "folder/train"))) == 2
    assert [path.name for path in FolderMasks(tmp_path / "masks", img_size=8).images] == ["a.png", "b.ppm"]
    assert sorted(path.name for path in image_files([str(tmp_path / "folder/train")])) == ["a.png", "b.ppm"]
