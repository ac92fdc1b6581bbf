"""The real-image sets of issue 18 are written as image folders that `sarvit train --data-set folder` reads."""
from __future__ import annotations

import pytest

from sarvit.data.real_images import SETS, write_real_set
from sarvit.data.survey import survey


def test_lfw_is_written_as_a_balanced_two_class_folder(tmp_path):
    root = write_real_set(tmp_path / "lfw", "lfw")
    counts = {split: {folder.name: len(list(folder.glob("*.png"))) for folder in (root / split).iterdir()}
              for split in ("train", "val")}
    assert counts == {"train": {"face": 60, "non-face": 60}, "val": {"face": 40, "non-face": 40}}
    found = survey("folder", str(root))
    assert (found.images, found.side) == (120, 25)
    assert write_real_set(root, "lfw") == root  # a complete folder is left as it is


def test_photo_crops_validate_on_tiles_never_trained_on():
    from sarvit.data.real_images import PHOTOS, photo_crops

    images, labels, train = photo_crops(train_per_photo=3, val_per_photo=2)
    assert images.shape == (50, 48, 48, 3) and train == 30
    assert sorted(labels[train:].tolist()) == sorted(list(range(len(PHOTOS))) * 2)
    assert (images[..., 0] == images[..., 2]).all()  # grey: a class is the photograph, not its colours


def test_an_unknown_set_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="name must be one of digits-clutter"):
        write_real_set(tmp_path, "mnist")
    assert "lfw" in SETS and "photos" in SETS
