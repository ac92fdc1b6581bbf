"""`sarvit train` on timm's pyramids (PVT-v2, Swin) at tiny sizes, then `analyze` and `visualize` on its
checkpoint: the size flags size the last stage (sarvit.train.pyramid_sizes), S is read there per head."""
import json

import pytest
import torch

from sarvit.checkpoints import load_model
from sarvit.cli import main
from sarvit.models.pyramids import last_stage_blocks
from sarvit.train.pyramid_sizes import pyramid_kwargs

FAST = ["--num-workers", "0", "--device", "cpu"]
TINY_RUN = ["--query", "mean", "--input-size", "96", "--depth", "2", "--embed-dim", "64", "--num-heads", "2",
            "--epochs", "1", "--data-set", "synthetic", "--num-samples", "16", "--batch-size", "8", *FAST]


def one_error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("name, widths, grid", [
    ("pvt_v2_b0", (8, 16, 40, 64), 3),                   # b0: 32/64/160/256, heads 1/2/5/8; 96 px / 32 = 3
    ("swin_tiny_patch4_window7_224", (8, 16, 32, 64), 3),  # stage widths C, 2C, 4C, 8C; heads 3/6/12/24
])
def test_train_analyze_visualize(name, widths, grid, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", name, *TINY_RUN, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"4 stages of 2/2/{'6' if 'swin' in name else '2'}/2 blocks, widths {'/'.join(map(str, widths))}" in out
    model, info = load_model(run / "last.pth", "cpu")
    blocks = last_stage_blocks(model)
    assert len(blocks) == 2 and type(blocks[-1]).__name__ in ("PVTv2SARBlock", "SwinSARBlock")
    assert blocks[-1].attn.num_heads == 2 and info["input_size"] == 96 and info["sar"]["query"] == "mean"
    logits, maps = model(torch.zeros(1, 3, 96, 96), return_maps=True)
    assert logits.shape == (1, 10) and maps.shape == (1, 2, grid, grid)

    json_path = tmp_path / "analyze.json"
    assert main(["analyze", "--weights", str(run / "last.pth"), "--data-set", "synthetic", "--num-samples", "4",
                 "--json", str(json_path), *FAST]) == 0
    result = json.loads(json_path.read_text())
    assert result["images"] == 4 and [row["head"] for row in result["per_head"]] == [0, 1]
    for row in result["per_head"]:  # at most log(9) over a 3x3 grid
        assert 0.0 <= row["spatial_entropy"] <= torch.log(torch.tensor(9.0)).item() and row["components"] >= 1.0

    if name.startswith("pvt_v2"):  # built for no size (a convolutional stem): --input-size sets what it is fed
        assert main(["analyze", "--weights", str(run / "last.pth"), "--data-set", "synthetic", "--num-samples", "2",
                     "--input-size", "64", "--json", str(tmp_path / "at64.json"), *FAST]) == 0
        assert json.loads((tmp_path / "at64.json").read_text())["images"] == 2

    pictures = tmp_path / "pictures"
    assert main(["visualize", "--weights", str(run / "last.pth"), "--data-set", "synthetic", "--num-samples", "1",
                 "--output-dir", str(pictures), "--dpi", "40", *FAST]) == 0
    assert [p.name for p in pictures.iterdir()] == ["synthetic_0000_attention.png"]


def test_size_flags_map_to_the_last_stage():
    pvt = pyramid_kwargs("pvt_v2_b2", {"depth": 1, "embed_dim": 128, "num_heads": 4, "input_size": 64})
    # b2: depths 3/4/6/3, widths 64/128/320/512, heads 1/2/5/8: widths x 128/512, heads x 4/8 (at least 1)
    assert pvt == {"depths": (3, 4, 6, 1), "embed_dims": (16, 32, 80, 128), "num_heads": (1, 1, 2, 4)}
    swin = pyramid_kwargs("swin_tiny_patch4_window7_224", {"patch_size": 2, "input_size": 64})
    assert swin == {"depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "embed_dim": 96, "img_size": 64,
                    "patch_size": 2}  # 64 / (2 * 8): a 4x4 last grid, inside the 7x7 window


@pytest.mark.parametrize("model, argv, words", [
    ("swin_tiny_patch4_window7_224", ["--input-size", "96"],
     "--query: 'swin_tiny_patch4_window7_224' (SwinTransformer) has no [CLS] token"),
    ("pvt_v2_b0", ["--input-size", "96"], "has no [CLS] token"),
    ("swin_tiny_patch4_window7_224", ["--query", "mean", "--input-size", "448"],
     "a 14x14 grid in 7x7 windows, so no query meets every patch key; SAR needs one window over it: give "
     "--input-size at most 224"),
    ("swin_tiny_patch4_window7_224", ["--query", "mean", "--input-size", "96", "--embed-dim", "60"],
     "--embed-dim 60: swin_tiny_patch4_window7_224's last stage is 8 times its first stage's width"),
    ("pvt_v2_b0", ["--query", "mean", "--input-size", "96", "--patch-size", "8"], "--patch-size: pvt_v2_b0 has an "
     "overlapping 7x7 stem"),
    ("pvt_v2_b0", ["--query", "mean", "--input-size", "96", "--embed-dim", "40", "--num-heads", "5"],
     "widths 5/10/25/40 take 1/1/3/5 heads, and 3 does not divide 25"),  # heads 1/2/5/8 x 5/8, rounded
])
def test_refused_in_one_line(model, argv, words, tmp_path, capsys):
    line = one_error_line(capsys, ["train", "--model", model, *argv, "--epochs", "1", "--num-samples", "16",
                                   "--output-dir", str(tmp_path / "run"), *FAST])
    assert words in line


@pytest.mark.parametrize("scale, size", [("tiny", 96), ("small", 96), ("paper", 224)])
def test_hybrids_grid_pyramid_cells_build(scale, size):
    from sarvit.cli import parse_args
    from sarvit.experiments.grids import get_grid, scale_flags
    from sarvit.train.build import model_spec
    from sarvit.train.config import resolve_config

    grid = get_grid("hybrids")
    for family, depths in (("pvt_v2", (2, 2, 2, 2)), ("swin", (2, 2, 6, 2))):
        for arm in ("baseline", "sar"):
            cell = next(cell for cell in grid.cells if cell.name == f"{family}-{arm}")
            given = vars(parse_args(["train", *scale_flags(scale, grid, "synthetic"), *cell.flags]))
            config = resolve_config({key: value for key, value in given.items() if key not in ("run", "command")})
            spec = model_spec(config, 10)
            assert spec.sar["query"] == "mean" and config["input_size"] == size
            assert spec.timm_kwargs["depths"] == (depths if scale != "tiny" else (*depths[:3], 2))
            if scale == "tiny":
                assert spec.timm_kwargs["num_heads"][-1] == 2
