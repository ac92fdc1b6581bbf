"""Failures a user meets: non-finite losses, torn checkpoint writes, bad checkpoints and paths."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import torch

from sarvit import create_model
from sarvit.cli import main
from sarvit.errors import SarvitError
from sarvit.checkpoints import files as checkpoint_files
from sarvit.train import rng as rng_module
from test_train_common import one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)

# the module, not the function `sarvit.losses.spatial_entropy` the package re-exports under the same name
entropy_module = importlib.import_module("sarvit.losses.spatial_entropy")


def inject_nan(monkeypatch, from_call: int, calls: int = 10 ** 9):
    """Make the training step's spatial entropy NaN for calls ``from_call .. from_call + calls - 1`` (0-based)."""
    real = entropy_module.spatial_entropy
    seen = {"n": 0}

    def poisoned(*args, **kwargs):
        value = real(*args, **kwargs)
        index, seen["n"] = seen["n"], seen["n"] + 1
        return value * float("nan") if from_call <= index < from_call + calls else value

    monkeypatch.setattr(entropy_module, "spatial_entropy", poisoned)


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    # 6 training steps per epoch: call 8 (0-based) is step 3 (1-based) of the second epoch.
    inject_nan(monkeypatch, from_call=8)
    assert main(["train", *tiny_argv(out, "--epochs", "3", "--log-interval", "100")]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "epoch 2, step 3" in err and "--skip-nonfinite" in err
    assert str(out / "last.pth") in err and "Traceback" not in err
    kept = torch.load(out / "last.pth", weights_only=True)
    assert kept["epoch"] == 0 and all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert len((out / "log.jsonl").read_text().splitlines()) == 1


def test_skip_nonfinite_counts_and_continues(tmp_path, monkeypatch):
    out = tmp_path / "run"
    inject_nan(monkeypatch, from_call=2, calls=2)
    assert main(["train", *tiny_argv(out, "--epochs", "1", "--skip-nonfinite")]) == 0
    line = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert line["train_skipped_steps"] == 2 and line["train_loss"] == line["train_loss"]  # not NaN
    weights = torch.load(out / "last.pth", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    checkpoint_files.save_atomic({"epoch": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def torn_save(obj, file):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_files.torch, "save", torn_save)
    with pytest.raises(SarvitError, match=f"cannot write {path}: disk full; the previous file is kept"):
        checkpoint_files.save_atomic({"epoch": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pth"]


def test_rng_state_round_trips_through_weights_only(tmp_path):
    import random

    import numpy as np

    state = rng_module.rng_state()
    checkpoint_files.save_atomic({"rng": state}, tmp_path / "r.pth")
    draws = (torch.rand(3), np.random.rand(3), random.random())
    rng_module.set_rng_state(torch.load(tmp_path / "r.pth", weights_only=True)["rng"])
    assert torch.equal(torch.rand(3), draws[0]) and np.array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]


def test_unsafe_or_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    assert main(["eval", "--weights", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert "is not a PyTorch checkpoint (it begins b'not a ch'" in err and "weights_only=False" not in err
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert main(["eval", "--weights", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a PyTorch checkpoint" in err and "weights_only" not in err
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": {"w": torch.ones(1)}, "hook": NotPlainData()}, pickled)
    assert main(["eval", "--weights", str(pickled)]) == 2
    err = capsys.readouterr().err
    assert "holds Python objects beyond tensors and plain data" in err and "weights_only=False" not in err
    torn = tmp_path / "torn.pth"
    torn.write_bytes((tmp_path / "pickled.pth").read_bytes()[:100])
    assert main(["eval", "--weights", str(torn)]) == 2
    assert "is a damaged or truncated PyTorch file" in capsys.readouterr().err
    assert main(["eval", "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err


class NotPlainData:
    """An arbitrary pickled object: what ``weights_only=True`` exists to refuse."""


def test_deit_checkpoint_with_args_namespace_loads(tmp_path):
    import argparse

    from sarvit.checkpoints import load_checkpoint

    path = tmp_path / "deit.pth"
    weights = {"w": torch.ones(2)}
    torch.save({"model": weights, "args": argparse.Namespace(lr=5e-4, model="deit_small_patch16_224"), "epoch": 299},
               path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], weights["w"])


def test_other_architecture_names_the_keys(tmp_path, capsys):
    weights = tmp_path / "wide.pth"
    wide = create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, embed_dim=48, num_heads=3,
                        num_classes=4)
    torch.save(wide.state_dict(), weights)
    assert main(["train", *tiny_argv(tmp_path / "ft", "--finetune", str(weights))]) == 2
    err = capsys.readouterr().err
    assert "blocks.2" in err and "keys the model does not have" in err
    assert main(["eval", "--weights", str(weights), "--model", "vit_tiny_patch16_224", "--input-size", "32",
                 "--patch-size", "8", "--depth", "2", "--embed-dim", "64", "--num-heads", "4", "--num-classes", "4",
                 "--num-samples", "20", "--num-workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "shape mismatch" in err and "cls_token" in err


def test_bad_data_path_is_a_message_not_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sarvit", "train", "--data-set", "cifar10", "--data-path", str(tmp_path / "nope"),
         "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("sarvit train: error: cifar10") and "Traceback" not in result.stderr
    assert str(tmp_path / "nope") in result.stderr


def test_randaugment_zero_bit_posterize_does_not_crash():
    import pickle

    from PIL import Image
    from timm.data import auto_augment

    from sarvit.data.transforms import build_transform

    timms_ops = dict(auto_augment.NAME_TO_OP)
    transform = build_transform(True, 32)
    assert auto_augment.NAME_TO_OP == timms_ops  # a local policy: timm's table is left as it was
    rand_augment = next(t for t in transform.transforms if isinstance(t, auto_augment.RandAugment))
    op = next(op for op in rand_augment.ops if op.name == "PosterizeIncreasing").aug_fn
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert op(image, 0).getpixel((0, 0)) == (0, 0, 0) and op(image, 2).getpixel((0, 0)) == (192, 64, 0)
    with pytest.raises(ValueError):  # timm's own op still raises, as current Pillow does
        timms_ops["PosterizeIncreasing"](image, 0)
    assert pickle.loads(pickle.dumps(op))(image, 0).getpixel((0, 0)) == (0, 0, 0)  # spawned workers get it too


def test_corrupt_image_in_a_worker_names_its_file(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for name in ("a", "b"):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (32, 32), (60 * i, 90, 200)).save(folder / f"{i}.png")
    (tmp_path / "data" / "train" / "a" / "broken.png").write_bytes(b"not an image")
    argv = ["train", "--data-set", "folder", "--data-path", str(tmp_path / "data"), "--model", "vit_tiny_patch16_224",
            "--input-size", "32", "--patch-size", "8", "--depth", "1", "--embed-dim", "48", "--num-heads", "3",
            "--batch-size", "9", "--epochs", "1", "--num-workers", "1", "--no-tensorboard", "--no-model-ema",
            "--no-repeated-aug", "--mixup", "0", "--cutmix", "0", "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
