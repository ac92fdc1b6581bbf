"""Data checked before training: every unreadable image of both splits named in one message before epoch 1 (or
left out with --skip-bad-images), remembered by size and time so a second check decodes nothing; one class
refused; 16-bit and float images scaled to 8 bits; a decompression bomb names its file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sarvit.data.checks as checks
from sarvit import SarvitError
from sarvit.cli import main
from sarvit.data import load_rgb_image
from test_train_common import one_cpu_thread  # noqa: F401 (autouse fixture)

ARGV = ["--data-set", "folder", "--input-size", "32", "--patch-size", "8", "--depth", "1", "--embed-dim", "24",
        "--num-heads", "2", "--epochs", "1", "--batch-size", "4", "--num-workers", "0", "--device", "cpu",
        "--no-tensorboard", "--attention-every", "0"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def image_tree(root: Path, classes=("a", "b"), per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            for index in range(per_class):
                path = root / split / name / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return root


def test_every_bad_image_of_both_splits_is_named_before_training(tmp_path, capsys):
    data = image_tree(tmp_path / "data")
    bad = [data / "train" / "a" / "0.png", data / "train" / "b" / "2.png", data / "val" / "a" / "1.png"]
    bad[0].write_bytes(bad[0].read_bytes()[:60])  # truncated
    bad[1].write_bytes(b"not an image at all")
    bad[2].write_bytes(b"\x89PNG garbage")
    argv = ["train", *ARGV, "--data-path", str(data), "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "3 image file(s) cannot be read (2 in training, 1 in validation)" in err
    assert all(str(path) in err for path in bad) and "--skip-bad-images" in err
    assert not (tmp_path / "run").exists()  # a run that fails before its first epoch leaves no empty folder
    assert main([*argv, "--skip-bad-images"]) == 0
    assert "left out 3 unreadable image file(s) (2 in training, 1 in validation)" in capsys.readouterr().out


def test_a_second_check_decodes_only_what_changed(tmp_path, monkeypatch):
    data = image_tree(tmp_path / "data")
    files = sorted(str(path) for path in (data / "train").rglob("*.png"))
    decoded = []
    real = checks._reason
    monkeypatch.setattr(checks, "_reason", lambda path: decoded.append(path) or real(path))
    checks._decode_all(files, "training", 1)
    assert sorted(decoded) == files
    decoded.clear()
    checks._decode_all(files, "training", 1)
    assert decoded == []
    Path(files[0]).write_bytes(b"broken since")
    assert [path for _, path, _ in checks._decode_all(files, "training", 1)] == [files[0]] and decoded == [files[0]]


def test_one_class_is_refused(tmp_path, capsys):
    data = image_tree(tmp_path / "data", classes=("only",))
    assert main(["train", *ARGV, "--data-path", str(data), "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected at least 2 classes to classify, found 1" in err


def test_top5_is_printed_only_with_more_than_five_classes(tmp_path, capsys):
    data = image_tree(tmp_path / "data", per_class=2)
    assert main(["train", *ARGV, "--data-path", str(data), "--output-dir", str(tmp_path / "run")]) == 0
    assert "top-5" not in capsys.readouterr().out


@pytest.mark.parametrize("mode, array, expected", [
    ("I;16", np.array([[0, 257 * 128, 65535]], np.uint16), [0, 128, 255]),
    ("F", np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),
], ids=["16-bit", "float"])
def test_high_bit_depth_images_are_scaled_to_8_bits(tmp_path, mode, array, expected):
    path = tmp_path / ("image.png" if mode == "I;16" else "image.tif")
    Image.fromarray(array).save(path)
    assert Image.open(path).mode == mode  # what a 16-bit PNG / float TIFF opens as
    assert np.asarray(load_rgb_image(path))[0, :, 0].tolist() == expected


def test_float_images_out_of_range_and_bombs_are_refused_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "hdr.tif"
    Image.fromarray(np.array([[0.0, 7.5]], np.float32)).save(path)
    with pytest.raises(SarvitError, match=r"hdr.tif: expected F pixel values in 0-1, found 0 to 7.5"):
        load_rgb_image(path)
    big = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(SarvitError, match=r"could not read image file .*big.png: .*decompression bomb"):
        load_rgb_image(big)
