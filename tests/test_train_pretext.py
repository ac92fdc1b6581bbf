"""`sarvit train --pretext rotation` end to end on CPU, then `--finetune` of its checkpoint on the labelled set."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import sarvit
from sarvit.cli import main
from sarvit.data import PRETEXTS
from sarvit.options import OPTIONS
from sarvit.train.build import build_datasets, model_spec
from test_train_common import config_of, one_cpu_thread  # noqa: F401 (autouse fixture)

# A tiny ARViT (2 blocks of width 48) on 64 synthetic images, one epoch: a few seconds per run.
TINY_ARVIT = [
    "--model", "arvit_base", "--no-sar", "--input-size", "32", "--patch-size", "8", "--depth", "2", "--embed-dim",
    "48", "--num-heads", "3", "--num-samples", "64", "--batch-size", "16", "--epochs", "1", "--num-workers", "0",
    "--no-tensorboard", "--warmup-epochs", "0", "--device", "cpu", "--no-model-ema", "--log-interval", "2",
]


def last_line(out):
    return json.loads((out / "log.jsonl").read_text().splitlines()[-1])


def test_rotation_pretraining_then_finetune(tmp_path, capsys):
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    argv = [*TINY_ARVIT, "--pretext", "rotation", "--reg", "distance:0.01@0", "--output-dir", str(pre)]
    assert main(["train", *argv]) == 0
    assert f"{4 * 64} images/epoch" in capsys.readouterr().out  # every image in each of its four rotations
    line = last_line(pre)
    assert 0.0 <= line["val_top1"] <= 100.0 and line["val_entropy"] is None  # no [CLS] maps in ARViT
    assert line["train_reg_distance"] > 0  # the thesis's distance loss on the first block's attention
    checkpoint = torch.load(pre / "last.pth", map_location="cpu", weights_only=True)
    assert checkpoint["model"]["head.weight"].shape[0] == 4 and checkpoint["model_config"]["name"] == "arvit_base"
    saved = yaml.safe_load((pre / "config.yaml").read_text())
    assert saved["pretext"] == "rotation" and saved["mixup"] == saved["cutmix"] == 0.0

    finetune = ["--finetune", str(pre / "last.pth"), "--no-sar", "--num-samples", "64", "--num-classes", "3",
                "--batch-size", "16", "--epochs", "1", "--num-workers", "0", "--no-tensorboard", "--warmup-epochs",
                "0", "--device", "cpu", "--no-model-ema", "--output-dir", str(fine)]
    assert main(["train", *finetune]) == 0
    printed = capsys.readouterr().out
    assert "classifier head not loaded (new class count): head.weight, head.bias" in printed
    tuned = torch.load(fine / "last.pth", map_location="cpu", weights_only=True)
    assert tuned["model"]["head.weight"].shape[0] == 3 and tuned["config"]["pretext"] is None
    assert tuned["config"]["depth"] == 2 and tuned["config"]["embed_dim"] == 48  # the pre-trained architecture
    assert last_line(fine)["val_top1"] is not None


def test_rotation_pretraining_of_a_sar_vit(tmp_path):
    out = tmp_path / "vit"
    vit = ["--model", "vit_tiny_patch16_224", "--depth", "2", "--embed-dim", "48", "--num-heads", "3",
           "--input-size", "32", "--patch-size", "8", "--sar", "--reg", "patch-similarity@-1"]
    argv = [*TINY_ARVIT[TINY_ARVIT.index("--num-samples"):], *vit, "--pretext", "rotation", "--output-dir", str(out)]
    assert main(["train", *argv]) == 0
    line = last_line(out)
    assert line["train_entropy"] is not None and line["val_entropy"] is not None  # SAR's loss runs on the pretext
    assert line["train_reg_patch_similarity"] is not None
    assert torch.load(out / "last.pth", weights_only=True)["model"]["head.weight"].shape[0] == 4


def test_pretext_datasets_hold_every_image_in_four_rotations():
    train_set, val_set, num_classes = build_datasets(config_of(*TINY_ARVIT, "--pretext", "rotation"))
    assert num_classes == 4 and (len(train_set), len(val_set)) == (4 * 64, 4 * (64 // 5))
    image, label = val_set[6]
    assert label == 2 and image.shape == (3, 32, 32)
    torch.testing.assert_close(image, torch.rot90(val_set.dataset[1][0], 2, dims=(1, 2)))


def test_pretext_options():
    assert config_of("--pretext", "rotation")["mixup"] == 0.0
    deit = ("--data-set", "cifar10", "--recipe", "deit")
    assert config_of("--pretext", "rotation", *deit)["cutmix"] == 0.0  # DeiT's 1.0 otherwise
    assert config_of("--pretext", "rotation", *deit, "--mixup", "0.2")["mixup"] == 0.2
    assert config_of(*deit)["mixup"] == 0.8
    with pytest.raises(SystemExit):
        config_of("--pretext", "jigsaw")
    table = next(option for option in OPTIONS if option.name == "pretext")
    assert table.choices == PRETEXTS  # the option table (no torch) names the data room's tasks


def test_thesis_recipe_resolves_and_builds_arvit():
    recipe = Path(sarvit.__file__).parent / "recipes" / "arvit.yaml"
    config = config_of("--config", str(recipe), "--data-set", "cifar10", "--pretext", "rotation")
    architecture = (config["model"], config["patch_size"], config["input_size"])
    assert architecture == ("arvit_base", 16, 224) and config["batch_size"] == 80
    assert not (config["sar"] or config["sar_loss"] or config["remove_last_skip"] or config["remove_last_norm"])
    assert (config["opt"], config["lr"], config["weight_decay"], config["epochs"]) == ("adamw", 5e-4, 0.05, 300)
    assert config["mixup"] == config["cutmix"] == 0.0  # the pretext's, as the recipe leaves them to DeiT
    assert config_of("--config", str(recipe), "--data-set", "cifar10")["mixup"] == 0.8  # fine-tuning: DeiT's
    with torch.device("meta"):
        model = model_spec(config, 4).build()
    assert type(model).__name__ == "ARViT" and model.patch_embed.grid_size == (14, 14) and model.num_classes == 4
