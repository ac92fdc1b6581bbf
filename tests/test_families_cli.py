"""`sarvit train` with SAR on every non-pyramid family at tiny sizes, then `analyze` and `visualize` on its
checkpoint: per-head S from the last block, a picture per image (the pyramids: tests/test_pyramids_cli.py)."""
import json
import math

import pytest
import torch

from sarvit.checkpoints import load_model
from sarvit.cli import main

FAST = ["--num-workers", "0", "--device", "cpu", "--data-set", "synthetic"]
SMALL = ["--depth", "2", "--embed-dim", "64", "--num-heads", "2", "--epochs", "1", "--num-samples", "16",
         "--batch-size", "8"]
VIT_32 = ["--input-size", "32", "--patch-size", "4"]  # an 8x8 grid
FAMILIES = [  # family, --model and its flags, the side of S
    ("ViT-gap", ["--model", "vit_base_patch16_gap_224", "--query", "mean", *VIT_32], 8),
    ("DeiT-III", ["--model", "deit3_small_patch16_224", *VIT_32], 8),
    ("Eva-RoPE", ["--model", "vit_small_patch16_rope_224", *VIT_32], 8),
    ("T2T-ViT-14", ["--model", "t2t_vit_14", "--input-size", "96", "--patch-size", "16"], 6),
    ("PVT-Small", ["--model", "pvt_small", "--input-size", "96", "--patch-size", "32"], 3),
    ("CvT-13", ["--model", "cvt_13", "--input-size", "96", "--patch-size", "16"], 3),  # squeezed 3x3 keys of 6x6
]


@pytest.mark.parametrize("family, flags, side", FAMILIES, ids=[row[0] for row in FAMILIES])
def test_train_analyze_visualize(family, flags, side, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *flags, *SMALL, *FAST, "--output-dir", str(run)]) == 0
    line = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(line["train_loss"]) and line["train_reg_spatial_entropy"] >= 0.0
    model, info = load_model(run / "last.pth", "cpu")
    size = info["input_size"]
    logits, maps = model(torch.zeros(1, 3, size, size), return_maps=True)
    assert logits.shape == (1, 10) and maps.shape == (1, 2, side, side)

    result_path = tmp_path / "analyze.json"
    assert main(["analyze", "--weights", str(run / "last.pth"), "--num-samples", "4", "--json", str(result_path),
                 *FAST]) == 0
    result = json.loads(result_path.read_text())
    assert result["images"] == 4 and [row["head"] for row in result["per_head"]] == [0, 1]
    for row in result["per_head"]:  # at most log(k * k)
        assert 0.0 <= row["spatial_entropy"] <= math.log(side * side) and row["components"] >= 1.0

    pictures = tmp_path / "pictures"
    assert main(["visualize", "--weights", str(run / "last.pth"), "--num-samples", "1", "--output-dir", str(pictures),
                 "--dpi", "40", *FAST]) == 0
    assert [p.name for p in pictures.iterdir()] == ["synthetic_0000_attention.png"]
