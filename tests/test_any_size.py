"""Any image size: timm's create_transform at every input size (mixed-size folders, <= 32 px), --hflip,
--crop-scale, repeated augmentation that keeps every image, a misfit caught before the first epoch, the pace."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from sarvit import SarvitError
from sarvit.cli import main
from sarvit.data import build_transform
from sarvit.train.distributed import DistInfo
from sarvit.train.pace import Pace
from test_train_common import one_cpu_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("size", [16, 32, 48, 224])
@pytest.mark.parametrize("train", [True, False])
def test_every_image_size_becomes_the_input_size(size, train):
    transform = build_transform(train, size)
    for width, height in ((1000, 872), (300, 451), (8, 8), (32, 32)):
        assert tuple(transform(Image.new("RGB", (width, height))).shape) == (3, size, size)


def test_training_crop_is_timms_random_resized_crop_at_small_sizes_too():
    names = [type(step).__name__ for step in build_transform(True, 32).transforms]
    assert names[0] == "RandomResizedCropAndInterpolation" and "RandomCrop" not in names
    assert build_transform(True, 32, crop_scale=(0.35, 1.0)).transforms[0].scale == (0.35, 1.0)


def test_evaluation_keeps_the_aspect_ratio():
    """Resize of the shorter side by crop_pct, then a centre crop: a wide image's middle, not a squashed whole."""
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, 100:200] = 255  # a white square in the middle of a black 3:1 image
    out = build_transform(False, 32, eval_crop_ratio=1.0, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(pixels))
    assert out.min() > 0.8  # the centre crop is the white square (edges blurred by bicubic resizing); squashing
    assert out.mean() > 0.95  # the 3:1 image would bring in its black thirds


def test_hflip_probability_zero_turns_flips_off():
    def flips(transform):
        return [step for step in transform.transforms if isinstance(step, T.RandomHorizontalFlip)]

    assert flips(build_transform(True, 32))[0].p == 0.5
    assert flips(build_transform(True, 32, hflip=0.0)) == []
    with pytest.raises(SarvitError, match="^hflip"):
        build_transform(True, 32, hflip=1.5)
    with pytest.raises(SarvitError, match="^crop_scale"):
        build_transform(True, 32, crop_scale=(0.9, 0.5))


def test_repeated_augmentation_epoch_covers_the_whole_set():
    from sarvit.train.build import train_loader

    dataset = torch.utils.data.TensorDataset(torch.zeros(1437, 1), torch.zeros(1437))
    config = {"repeated_aug": True, "batch_size": 1, "num_workers": 0, "pin_mem": False, "seed": 0}
    loader = train_loader(dataset, config, DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu")))
    assert len(loader.sampler) == 1437  # DeiT's rounding to 256 would give 1,280


def _mixed_folder(root):
    for split, count in (("train", 6), ("val", 2)):
        for label in ("a", "b"):
            for index, (width, height) in enumerate([(300, 200), (120, 400), (64, 64)][: count // 2 + 1]):
                pixels = np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)
                (root / split / label).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(root / split / label / f"{index}.png")
    return root


TINY_FOLDER = ["--data-set", "folder", "--epochs", "1", "--batch-size", "4", "--depth", "1", "--embed-dim", "24",
               "--num-heads", "2", "--num-workers", "0", "--no-tensorboard", "--device", "cpu"]


@pytest.mark.parametrize("size, patch", [(16, 4), (32, 4), (64, 16)])
def test_mixed_size_folder_trains_and_evaluates(tmp_path, capsys, size, patch):
    root = _mixed_folder(tmp_path / "photos")
    out = tmp_path / "run"
    argv = [*TINY_FOLDER, "--data-path", str(root), "--input-size", str(size), "--patch-size", str(patch)]
    assert main(["train", *argv, "--output-dir", str(out)]) == 0
    assert main(["eval", "--weights", str(out / "last.pth"), "--num-workers", "0", "--device", "cpu"]) == 0
    assert "top-1" in capsys.readouterr().out


def test_misfit_between_images_and_model_is_caught_before_the_first_epoch(tmp_path, capsys):
    root = _mixed_folder(tmp_path / "photos")
    argv = [*TINY_FOLDER, "--data-path", str(root), "--input-size", "36", "--patch-size", "8"]
    assert main(["train", *argv, "--output-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "not a multiple of the patch size 8" in error and "Traceback" not in error
    run = tmp_path / "run"  # claimed (locked) before the data loads, but nothing of a run was written
    assert not run.exists() or {path.name for path in run.iterdir()} <= {".sarvit.lock"}


def test_images_of_another_size_than_the_model_are_caught(tmp_path):
    from sarvit.train.build import check_input_fits, model_spec

    config = {"input_size": 32, "model": "vit_tiny_patch16_224", "patch_size": 8, "depth": 1, "embed_dim": 24,
              "num_heads": 2, "drop": 0.0, "drop_path": 0.0, "remove_last_skip": True, "remove_last_norm": True,
              "remove_last_mlp_skip": False, "similarity": "dot"}
    model = model_spec(config, 2).build()
    check_input_fits(model, {"validation": [(torch.zeros(3, 32, 32), 0)]}, config)
    with pytest.raises(SarvitError, match=r"validation set gives images of shape \(3, 40, 40\)"):
        check_input_fits(model, {"validation": [(torch.zeros(3, 40, 40), 0)]}, config)


def test_pace_tells_the_duration_once_after_the_first_steps():
    told = []
    pace = Pace(None, steps_per_epoch=20, epochs=5, train_images=1000, val_images=300, say=told.append)
    for _ in range(20):
        pace.update()
    assert len(told) == 1 and "for 5 epoch(s)" in told[0] and pace.told is not None
