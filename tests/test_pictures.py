"""Pictures during training (attention/epoch_NNN.png, TensorBoard images, named in the summary), curves from epoch 1,
ordinary file modes, analysis results beside the weights and never overwritten, visualize's aspect ratio."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

import sarvit
from sarvit.checkpoints import fresh_path, save_atomic, write_json
from sarvit.cli import main
from sarvit.train.pictures import picture_epochs
from test_train_common import one_cpu_thread, tiny_argv  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("epochs, every, expected", [
    (21, None, {3, 7, 11, 15, 19, 20}), (3, None, {0, 1, 2}), (10, 4, {3, 7, 9}), (10, 0, set())])
def test_picture_epochs_every_few_and_the_last(epochs, every, expected):
    assert picture_epochs(epochs, every) == expected


def test_a_run_draws_attention_pictures_and_names_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_argv(out, "--epochs", "3", "--attention-every", "2", "--tensorboard", "--model-ema",
                                     "--model-ema-warmup")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("(EMA ") == 3  # the EMA's top-1 beside the model's, every epoch
    pictures = sorted((out / "attention").glob("epoch_*.png"))
    assert [path.name for path in pictures] == ["epoch_002.png", "epoch_003.png"]
    assert "attention" in printed and "epoch_002.png, epoch_003.png" in printed
    width, height = Image.open(pictures[-1]).size
    assert width > 200 and height > width  # three validation images stacked, each a block of rows
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [event.step for event in events.Images("attention")] == [1, 2]  # 0-based epochs, as the scalars


def test_curves_count_epochs_from_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from sarvit.train.records import plot_curves

    history = [{"epoch": e, "train_loss": 2.0 - e * 0.1, "train_ce": 2.0 - e * 0.1, "val_top1": 10.0 * e,
                "lr": 1e-3} for e in range(3)]
    captured = {}
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        captured["figure"] = self
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    plot_curves(history, tmp_path / "curves.png")
    loss_axis = captured["figure"].axes[0]
    assert [list(line.get_xdata()) for line in loss_axis.lines] == [[1, 2, 3], [1, 2, 3]]
    styles = {(line.get_linestyle(), line.get_marker()) for line in loss_axis.lines}
    assert len(styles) == 2  # "train total" and "train CE" coincide here, yet both stay visible


def test_checkpoints_and_json_get_ordinary_file_modes(tmp_path):
    mask = os.umask(0o022)
    try:
        checkpoint = save_atomic({"x": torch.zeros(1)}, tmp_path / "last.pth")
        result = write_json({"a": 1}, tmp_path / "result.json")
    finally:
        os.umask(mask)
    for path in (checkpoint, result):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_fresh_path_never_reuses_a_name(tmp_path):
    first = tmp_path / "analyze.json"
    assert fresh_path(first) == first
    first.write_text("{}")
    assert fresh_path(first) == tmp_path / "analyze_2.json"
    (tmp_path / "analyze_2.json").write_text("{}")
    assert fresh_path(first) == tmp_path / "analyze_3.json"


@pytest.fixture(scope="module")
def weights(tmp_path_factory, write_model_checkpoint):
    torch.manual_seed(0)
    model = sarvit.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3,
                                num_classes=5).eval()
    return write_model_checkpoint(tmp_path_factory.mktemp("run") / "best.pth", model, epoch=0)


def test_analysis_writes_beside_the_weights_and_keeps_earlier_results(weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["analyze", "--weights", str(weights), "--num-samples", "4", "--num-workers", "0", "--device", "cpu"]
    assert main(argv) == 0 and main(argv) == 0
    first, second = weights.parent / "analyze.json", weights.parent / "analyze_2.json"
    assert json.loads(first.read_text())["images"] == 4 and second.is_file()
    assert "analyze.json exists: kept" in capsys.readouterr().err
    assert not (tmp_path / "analyze.json").exists()


def test_visualize_keeps_a_photos_aspect_ratio(weights, tmp_path):
    pixels = np.zeros((100, 300, 3), dtype=np.uint8)
    pixels[:, 100:200] = 255  # a white square in the middle of a wide black photo
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    from sarvit.analysis.inputs import ImageFiles

    image = ImageFiles([tmp_path / "wide.png"], 32)[0]
    assert image.shape == (3, 32, 32) and image.min() > 1.5  # normalised white only: no black squashed in
    assert main(["visualize", "--weights", str(weights), "--test-dir", str(tmp_path / "wide.png"), "--num-workers",
                 "0", "--device", "cpu"]) == 0
    assert (weights.parent / "attention_maps" / "wide_attention.png").is_file()
