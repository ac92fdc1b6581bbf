"""VOCForeground: layouts, palette masks with void pixels, mask-folder fallback, clear errors, the registry."""
import numpy as np
import pytest
import torch
from PIL import Image

from sarvit.data import NO_TARGET, MaskedDataset, VOCForeground, build_mask_dataset
from sarvit.errors import SarvitError


@pytest.mark.parametrize("level", ["VOC2012", "VOCdevkit", "parent"])
def test_accepts_the_voc2012_folder_or_its_parents(data_writers, tmp_path, level):
    voc_dir = data_writers.voc(tmp_path)
    root = {"VOC2012": voc_dir, "VOCdevkit": voc_dir.parent, "parent": tmp_path}[level]
    dataset = VOCForeground(root, split="val", img_size=40)
    assert len(dataset) == 2 and dataset.voc_dir == voc_dir and dataset.image_ids[0] == "2007_000033"


def test_foreground_and_void(data_writers, tmp_path):
    data_writers.voc(tmp_path)
    image, target, foreground, valid = VOCForeground(tmp_path, img_size=40)[0]
    assert target == NO_TARGET
    labels = data_writers.voc_labels(40)
    assert image.shape == (3, 40, 40) and image.dtype == torch.float32
    assert foreground.dtype == torch.bool and valid.dtype == torch.bool
    assert torch.equal(foreground, torch.from_numpy(labels == 1))
    assert torch.equal(valid, torch.from_numpy(labels != 255))
    assert not (foreground & ~valid).any()


def test_resize_uses_nearest_for_masks(data_writers, tmp_path):
    data_writers.voc(tmp_path)
    _, _, foreground, valid = VOCForeground(tmp_path, img_size=20)[1]
    assert foreground.shape == (20, 20) and valid.shape == (20, 20)
    expected = np.asarray(Image.fromarray(data_writers.voc_labels(40)).resize((20, 20), Image.NEAREST))
    assert torch.equal(foreground, torch.from_numpy(expected == 1))
    _, _, big_foreground, _ = VOCForeground(tmp_path, img_size=224)[1]
    assert big_foreground.shape == (224, 224) and 0 < big_foreground.float().mean() < 1


def test_falls_back_to_segmentation_class(data_writers, tmp_path):
    data_writers.voc(tmp_path, mask_folder="SegmentationClass")
    dataset = VOCForeground(tmp_path, img_size=40)
    assert dataset.mask_dir.name == "SegmentationClass"
    assert dataset[0][2].sum() == 400


def test_missing_layout_names_the_path(tmp_path):
    with pytest.raises(SarvitError) as error:
        VOCForeground(tmp_path / "nothing_here")
    assert str(tmp_path / "nothing_here") in str(error.value) and "JPEGImages" in str(error.value)


def test_missing_mask_names_the_file(data_writers, tmp_path):
    voc_dir = data_writers.voc(tmp_path)
    (voc_dir / "SegmentationObject" / "2007_000042.png").unlink()
    with pytest.raises(SarvitError, match="2007_000042.png"):
        VOCForeground(tmp_path)


def test_missing_split_list_and_bad_split(data_writers, tmp_path):
    voc_dir = data_writers.voc(tmp_path)
    with pytest.raises(SarvitError, match="trainval.txt"):
        VOCForeground(tmp_path, split="trainval")
    with pytest.raises(SarvitError, match="split"):
        VOCForeground(tmp_path, split="test")
    assert voc_dir.is_dir()


def test_rgb_mask_is_refused_with_its_mode(data_writers, tmp_path):
    voc_dir = data_writers.voc(tmp_path)
    Image.new("RGB", (40, 40)).save(voc_dir / "SegmentationObject" / "2007_000033.png")
    with pytest.raises(SarvitError, match="found mode RGB"):
        VOCForeground(tmp_path)[0]


def test_voc_comes_from_the_registry_with_the_synthetic_sets_item_shape(data_writers, tmp_path):
    data_writers.voc(tmp_path)
    voc, voc_classes = build_mask_dataset("voc", tmp_path, img_size=24)
    synthetic, synthetic_classes = build_mask_dataset("synthetic", img_size=24, num_samples=3, num_classes=4)
    assert isinstance(voc, MaskedDataset) and isinstance(synthetic, MaskedDataset)
    assert (voc_classes, synthetic_classes) == (0, 4)
    for image, target, foreground, valid in (voc[0], synthetic[1]):
        assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and isinstance(target, int)
        assert foreground.shape == valid.shape == (24, 24) and foreground.dtype == valid.dtype == torch.bool
    assert synthetic[1][1] == 1 and synthetic[1][3].all()  # every synthetic pixel counts
    with pytest.raises(SarvitError, match="a dataset with masks"):
        build_mask_dataset("cifar10", tmp_path, img_size=24)
    with pytest.raises(SarvitError, match="--data-path"):
        build_mask_dataset("voc", img_size=24)


class _WidePhoto(MaskedDataset):
    """One 60 x 30 photo whose object fills the middle third of its width (columns 20..39)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)

    def __len__(self) -> int:
        return 1

    def load(self, index: int):
        foreground = np.zeros((30, 60), dtype=bool)
        foreground[:, 20:40] = True
        pixels = np.zeros((30, 60, 3), dtype=np.uint8)
        pixels[foreground] = 255
        return Image.fromarray(pixels), NO_TARGET, foreground, np.ones_like(foreground)


def test_a_wide_photo_keeps_its_aspect_ratio_and_its_masks_stay_aligned():
    image, _, foreground, valid = _WidePhoto(30)[0]
    # shorter side 30 -> no resize; centre crop = columns 15..44, so the object is columns 5..24: 20 wide, as in
    # the photo (a squash to 30 x 30 would have made it 10 wide)
    assert foreground.shape == (30, 30) and valid.all()
    assert foreground[0].nonzero().flatten().tolist() == list(range(5, 25))
    bright = image.mean(dim=0) > 0  # ImageNet-normalised: black is negative, white positive
    assert torch.equal(bright, foreground)
    small_image, _, small_foreground, _ = _WidePhoto(15)[0]  # halved first, then cropped: the same geometry
    assert small_image.shape == (3, 15, 15) and small_foreground[0].sum() == 10
